"""Automatic interpretation of SAE latents: scores against the ground truth, categories, descriptions, cards.

    from MedSegLensLib.interpret import interpret_sae
    folder = interpret_sae("models/unet", "saes/unet", ["cohorts/adult_test"], "interpretation/")

`interpret_sae` loads the model and SAE and runs `interpret(cases, encode, n_latents, out)`, which takes
any encoder `Case -> LayerCodes` (tests plant codes).

Core pieces (usable without a network): `LatentScorer` streams `CaseMaps` + `LayerCodes` into
per-latent histograms (fit and held-out cases apart, `held_out_cases`) and finishes into a `ScoreTable`;
`label_all` gives categories (held-out-validated, artefacts named as such) and confidences;
`latent_records` the per-latent records of `latents.json` (with the sentence).
"""

from .artefacts import ARTEFACT_CATEGORIES, ArtefactSettings
from .categories import CATEGORIES, INACTIVE, UNLABELLED, LatentLabel, label_all, label_latent
from .describe import describe
from .distribution import category_counts, plot_distribution
from .evidence import CaseMaps, LayerCodes, layer_index, load_case_maps, read_atlas
from .pipeline import InterpretResult, InterpretSettings, interpret, score_cases
from .records import latent_records
from .sae_run import interpret_sae, interpret_sae_run
from .scoring import METRICS, LatentScorer, ScoreTable, ScoringSettings
from .split import held_out_cases
from .targets import TARGET_NAMES, TargetSet

__all__ = [
    "ARTEFACT_CATEGORIES",
    "ArtefactSettings",
    "CATEGORIES",
    "CaseMaps",
    "INACTIVE",
    "InterpretResult",
    "InterpretSettings",
    "LatentLabel",
    "LatentScorer",
    "LayerCodes",
    "METRICS",
    "ScoreTable",
    "ScoringSettings",
    "TARGET_NAMES",
    "TargetSet",
    "UNLABELLED",
    "category_counts",
    "describe",
    "held_out_cases",
    "interpret",
    "interpret_sae",
    "interpret_sae_run",
    "label_all",
    "label_latent",
    "latent_records",
    "layer_index",
    "load_case_maps",
    "plot_distribution",
    "read_atlas",
    "score_cases",
]
