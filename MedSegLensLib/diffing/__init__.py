"""Model diffing: compare SAE latents across populations, across SAEs of one layer, and across architectures.

Whole studies, paths in and one output folder out (what the CLI and the demo pipeline call):

    from MedSegLensLib.diffing import population_study, dictionary_study, architecture_study
    population_study("sae_pooled", "store_pooled", "out/populations")
    dictionary_study("sae_adult", "sae_ssa", "out/adult_ssa", store_a="store_adult", store_b="store_ssa")
    architecture_study("unet", "sae_unet", "segformer", "sae_segformer", ["cohorts/ssa"], "out/archs")

The parts:

    from MedSegLensLib.diffing import accumulate_usage, diff_populations
    diff = diff_populations(accumulate_usage(sae, ActivationStore(store_dir)))
    diff.backbone_summary()      # shared / specific / inconclusive / absent counts

    from MedSegLensLib.diffing import compare_dictionaries, swap_features
    comparison = compare_dictionaries(sae_adult, sae_ssa)           # decoder-cosine optimal matching
    swap = swap_features(sae_adult, sae_ssa, comparison.matching, batches, n_cases)

    from MedSegLensLib.diffing import ArchitectureDiff, CaseLatentMaps
    study = ArchitectureDiff(n_a, n_b); study.add_case(CaseLatentMaps(...)); result = study.result()
"""

from .architectures import (
    ArchDiffResult,
    ArchDiffSettings,
    ArchitectureDiff,
    CaseLatentMaps,
    CrossCorrelation,
    block_permutation,
    block_voxels,
)
from .dictionaries import DEFAULT_THRESHOLD, DictionaryComparison, DictionaryDiffSettings, compare_dictionaries
from .labels import LatentLabel, label_text, labels_for, read_labels
from .matching import CosineSimilarity, DenseSimilarity, Matching, match_dense, match_latents, match_pruned
from .populations import CATEGORIES, Contrast, PopulationDiff, PopulationDiffSettings, diff_populations
from .resample import resample_codes, trilinear_operator
from .studies import architecture_study, dictionary_study, population_study
from .swap import SwapResult, swap_features
from .usage import LatentUsage, accumulate_usage

__all__ = [
    "ArchDiffResult",
    "ArchDiffSettings",
    "ArchitectureDiff",
    "CATEGORIES",
    "CaseLatentMaps",
    "Contrast",
    "CosineSimilarity",
    "CrossCorrelation",
    "DEFAULT_THRESHOLD",
    "DenseSimilarity",
    "DictionaryComparison",
    "DictionaryDiffSettings",
    "LatentLabel",
    "LatentUsage",
    "Matching",
    "PopulationDiff",
    "PopulationDiffSettings",
    "SwapResult",
    "accumulate_usage",
    "architecture_study",
    "block_permutation",
    "block_voxels",
    "compare_dictionaries",
    "dictionary_study",
    "diff_populations",
    "label_text",
    "labels_for",
    "match_dense",
    "match_latents",
    "match_pruned",
    "population_study",
    "read_labels",
    "resample_codes",
    "swap_features",
    "trilinear_operator",
]
