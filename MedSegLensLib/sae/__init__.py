"""Sparse autoencoders on per-voxel activations: model, training, store, fidelity.

from MedSegLensLib.sae import SAETrainingSettings, train_sae, TensorRows, save_sae, SAEInfo
sae, summary = train_sae(TensorRows(rows), SAETrainingSettings(n_latents=1024, k=16))
save_sae(sae, "out/sae", SAEInfo(model.fingerprint, layer, training=summary))

fmap = layer_features(model, case, layer)          # the layer's map over a whole case, with its grid
codes = encode_case(model, load_sae("out/sae"), case)
heat = codes.latent_map(17)                        # one latent on case.grid
"""

from .capture import FeatureMap, layer_features
from .encode import CaseCodes, encode_case, encode_features
from .feature_rows import FeatureRows, sample_feature_map
from .fidelity import FidelityReport, dice_recovered, evaluate_fidelity
from .io import SAEInfo, check_compatible, check_sae_for_model, load_sae, save_sae
from .model import SAEConfig, SparseAutoencoder
from .rows import RowSource, TensorRows
from .store import ActivationStore, StoreWriter
from .strata import DEFAULT_QUOTAS, STRATA, sample_by_stratum, voxel_strata
from .training import Progress, SAETrainingSettings, Trainer, train_sae

__all__ = [
    "ActivationStore",
    "CaseCodes",
    "DEFAULT_QUOTAS",
    "FeatureMap",
    "FeatureRows",
    "FidelityReport",
    "Progress",
    "RowSource",
    "SAEConfig",
    "SAEInfo",
    "STRATA",
    "SparseAutoencoder",
    "StoreWriter",
    "TensorRows",
    "SAETrainingSettings",
    "Trainer",
    "check_compatible",
    "check_sae_for_model",
    "dice_recovered",
    "encode_case",
    "encode_features",
    "evaluate_fidelity",
    "layer_features",
    "load_sae",
    "sample_by_stratum",
    "sample_feature_map",
    "save_sae",
    "train_sae",
    "voxel_strata",
]
