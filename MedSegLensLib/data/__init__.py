"""Cases and cohorts: reading, validating, reorienting and writing MRI volumes."""

from .brats import CaseFiles, case_files_from_paths, find_case_files, read_case
from .case import LABEL_NAMES, LABEL_VALUES, MODALITIES, TISSUE_NAMES, Case, load_case
from .cohort import discover_cohort, discover_cohorts, read_manifest, write_manifest
from .geometry import Grid
from .labels import read_label_volume
from .volumes import read_volume, write_volume

__all__ = [
    "Case",
    "CaseFiles",
    "Grid",
    "LABEL_NAMES",
    "LABEL_VALUES",
    "MODALITIES",
    "TISSUE_NAMES",
    "case_files_from_paths",
    "discover_cohort",
    "discover_cohorts",
    "find_case_files",
    "load_case",
    "read_case",
    "read_label_volume",
    "read_manifest",
    "read_volume",
    "write_manifest",
    "write_volume",
]
