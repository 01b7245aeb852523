"""The main demo job: cached stages from synthetic cohorts to the report and the viewer's workspace.

from MedSegLensLib.pipeline import DemoSettings, run_demo
results = run_demo(DemoSettings.quick(), "demo-work")     # rerun: finished stages are skipped
results["latent_maps"].summary["failure_case"]          # the case the viewer opens on
"""

from .demo import build_stages, run_demo
from .report_stage import report_path
from .settings import CohortSpec, DemoSettings, default_cohorts
from .stages import Stage, StageContext, StageResult, run_stages

__all__ = [
    "CohortSpec",
    "DemoSettings",
    "Stage",
    "StageContext",
    "StageResult",
    "build_stages",
    "default_cohorts",
    "report_path",
    "run_demo",
    "run_stages",
]
