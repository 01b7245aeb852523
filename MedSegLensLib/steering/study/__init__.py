"""The failure-recovery study: oracle and label-free steering against baselines with the same search budget.

from MedSegLensLib.steering.study import StudySettings, run_recovery_study
run_recovery_study("models/unet", ["saes/decoder1"], test_cohorts, "study/", calibration=calib_cohorts)
"""

from .run import RecoveryStudy, run_recovery_study
from .selection import SELECTIONS
from .settings import StudySettings
from .stats import wilson

__all__ = ["SELECTIONS", "RecoveryStudy", "StudySettings", "run_recovery_study", "wilson"]
