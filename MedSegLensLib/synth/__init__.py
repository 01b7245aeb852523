"""Synthetic glioma cohorts built from the real MNI ICBM152 anatomy.

`generate_cohort` writes a BraTS-2023-named cohort folder for one population
(adult, pediatric, ssa, healthy), `ensure_cohort` only when the folder is not
complete yet; `synthesize_case` makes one case in memory;
`population_shift` gives a population's parameters at a severity.
"""

from .cohort import CohortSummary, case_id, ensure_cohort, generate_cohort
from .generator import SyntheticCase, case_seed, synthesize_case
from .location_atlas import ATLAS_LABELS
from .populations import DEFAULT_SEVERITY, POPULATIONS, PopulationShift, population_shift
from .templates import Templates, load_templates

__all__ = [
    "ATLAS_LABELS",
    "CohortSummary",
    "DEFAULT_SEVERITY",
    "POPULATIONS",
    "PopulationShift",
    "SyntheticCase",
    "Templates",
    "case_id",
    "case_seed",
    "ensure_cohort",
    "generate_cohort",
    "load_templates",
    "population_shift",
    "synthesize_case",
]
