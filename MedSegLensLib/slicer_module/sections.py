"""The panel's Qt glue, one mixin per section of the module's .ui, combined into one base of the module's widget."""

from .section_case import CaseSection
from .section_latents import LatentsSection
from .section_run import RunSection
from .section_steering import SteeringSection
from .section_triage import TriageSection


class PanelSections(CaseSection, RunSection, LatentsSection, TriageSection, SteeringSection):
    """The Case, Run, Latent features, Triage and Steering sections; they share the widget's `ui` and `core`."""
