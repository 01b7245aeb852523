"""Sparse autoencoders on per-voxel activations: model, training, store, fidelity.

    from MedSegLensLib.sae import TrainConfig, train_sae, TensorRows, save_sae, SAEInfo
    sae, summary = train_sae(TensorRows(rows), TrainConfig(n_latents=1024, k=16))
    save_sae(sae, "out/sae", SAEInfo(model.fingerprint, layer, training=summary))
"""

from .feature_rows import FeatureRows, sample_feature_map
from .fidelity import FidelityReport, dice_recovered, evaluate_fidelity
from .io import SAEInfo, check_compatible, load_sae, save_sae
from .model import SAEConfig, SparseAutoencoder
from .rows import RowSource, TensorRows
from .store import ActivationStore, StoreWriter
from .strata import DEFAULT_QUOTAS, STRATA, sample_by_stratum, voxel_strata
from .training import Progress, TrainConfig, Trainer, train_sae

__all__ = [
    "ActivationStore", "DEFAULT_QUOTAS", "FeatureRows", "FidelityReport", "Progress", "RowSource", "SAEConfig", "SAEInfo",
    "STRATA", "SparseAutoencoder", "StoreWriter", "TensorRows", "TrainConfig", "Trainer", "check_compatible",
    "dice_recovered", "evaluate_fidelity", "load_sae", "sample_by_stratum", "sample_feature_map", "save_sae", "train_sae",
    "voxel_strata",
]
