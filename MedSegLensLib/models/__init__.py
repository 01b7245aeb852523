"""Segmentation backbones (MONAI U-Net, a 3D SegFormer, any MONAI network), their storage, training and inference.

See docs/models.md. The names below are the package's public API.
"""

from .backbone_training import TrainingProgress, TrainingResult, TrainingSettings, train_model
from .config import ModelConfig, default_config, tiny_config
from .evaluation import evaluate_model, failure_cases, summarise_by_population, write_evaluation
from .inference import Prediction, PreparedInput, SegmentationModel, load_model
from .layers import LayerInfo, hookable_layers
from .registry import build_network
from .segformer import SegFormer3D
from .storage import save_model
from .training_data import labelled_cases

__all__ = [
    "LayerInfo",
    "ModelConfig",
    "Prediction",
    "PreparedInput",
    "SegFormer3D",
    "SegmentationModel",
    "TrainingProgress",
    "TrainingResult",
    "TrainingSettings",
    "build_network",
    "default_config",
    "evaluate_model",
    "failure_cases",
    "hookable_layers",
    "labelled_cases",
    "load_model",
    "save_model",
    "summarise_by_population",
    "tiny_config",
    "train_model",
    "write_evaluation",
]
