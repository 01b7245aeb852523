"""BraTS segmentation metrics: Dice and HD95 per region (WT, TC, ET) and label (NCR, ED)."""

from .evaluate import (
    Pair,
    label_files,
    match_folders,
    resolve_pairs,
    score_pair,
    score_pairs,
    summarise,
    write_metrics_csv,
)
from .scores import HD95_PENALTY_MM, REGIONS, STRUCTURES, brats_scores, dice, hd95, score_columns

__all__ = [
    "HD95_PENALTY_MM",
    "Pair",
    "REGIONS",
    "STRUCTURES",
    "brats_scores",
    "dice",
    "hd95",
    "label_files",
    "match_folders",
    "resolve_pairs",
    "score_columns",
    "score_pair",
    "score_pairs",
    "summarise",
    "write_metrics_csv",
]
