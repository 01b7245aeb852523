"""`ModelConfig`: everything needed to rebuild a segmentation network and feed it.

A model is described by JSON, not by code: the architecture and its
hyper-parameters, the grid the network expects (voxel spacing, patch size),
how intensities are normalised, which modality goes into which input channel
and which label each output channel means. The same config drives training,
inference, the layer listing and, later, the SAE sidecars.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..data import LABEL_NAMES, MODALITIES
from ..errors import ParameterError

# Architectures written or wrapped by the project; "monai:<Name>" names any MONAI network.
BUILTIN_ARCHITECTURES = ("unet", "segformer")
MONAI_PREFIX = "monai:"
# Models imported from other libraries (models/external): "<format>:<network class>", fed by their source's own
# preprocessing ("source" normalisation); their model.json carries what that needs.
IMPORTED_PREFIXES = ("nnunetv2:", "monai-bundle:")
NORMALISATIONS = ("zscore_nonzero", "none", "source")
DEFAULT_LABELS: tuple[tuple[int, str], ...] = ((0, "background"), *sorted(LABEL_NAMES.items()))

# Hyper-parameters of the two studied backbones, sized for a 2-core CPU at the synthetic cohorts' 2 mm.
# The SegFormer keeps the design (4 stages, overlapping patch embeddings, spatial-reduction attention, Mix-FFN,
# all-MLP decoder); its first embedding has stride 2, not 4, because 2 mm voxels are already twice the 1 mm
# of BraTS: stage 1 then works at 4 mm, as SegFormer3D's does on 1 mm BraTS volumes.
DEFAULT_HYPER_PARAMETERS: dict[str, dict[str, Any]] = {
    "unet": {
        "channels": [16, 32, 64, 128],
        "strides": [2, 2, 2],
        "num_res_units": 1,
        "norm": "instance",
    },
    "segformer": {
        "embed_dims": [16, 32, 64, 128],
        "depths": [1, 2, 2, 2],
        "num_heads": [1, 2, 4, 8],
        "patch_kernels": [3, 3, 3, 3],
        "patch_strides": [2, 2, 2, 2],
        "sr_ratios": [8, 4, 2, 1],
        "mlp_ratio": 4,
        "decoder_dim": 64,
    },
}
# The SegFormer's stride-2 first stage costs more per voxel on a CPU (depthwise 3D convolutions at high
# resolution), so it trains on smaller patches to keep the two backbones' training time comparable.
DEFAULT_PATCHES: dict[str, tuple[int, int, int]] = {"unet": (64, 64, 64), "segformer": (48, 48, 48)}
TINY_HYPER_PARAMETERS: dict[str, dict[str, Any]] = {
    "unet": {**DEFAULT_HYPER_PARAMETERS["unet"], "channels": [4, 8, 16], "strides": [2, 2]},
    "segformer": {
        **DEFAULT_HYPER_PARAMETERS["segformer"],
        "embed_dims": [8, 8, 16, 16],
        "depths": [1, 1, 1, 1],
        "num_heads": [1, 1, 2, 2],
        "sr_ratios": [4, 2, 1, 1],
        "mlp_ratio": 2,
        "decoder_dim": 16,
    },
}
DEFAULT_PATCH = (64, 64, 64)
TINY_PATCH = (16, 16, 16)


@dataclass
class ModelConfig:
    """The JSON-serialisable description of a segmentation model.

    spacing: voxel size (mm) the network works at; None means "each case's own grid".
    patch_size: training crop and sliding-window size, in voxels.
    labels: (label value, name) for each output channel, in channel order.
    modalities: which modality feeds each input channel.
    sliding_window: overlap, blend mode and batch size of full-volume inference.
    """

    architecture: str
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    spacing: tuple[float, float, float] | None = None
    patch_size: tuple[int, int, int] = DEFAULT_PATCH
    normalisation: str = "zscore_nonzero"
    modalities: tuple[str, ...] = MODALITIES
    labels: tuple[tuple[int, str], ...] = DEFAULT_LABELS
    sliding_window: dict[str, Any] = field(
        default_factory=lambda: {"overlap": 0.5, "mode": "gaussian", "batch_size": 2}
    )

    def __post_init__(self) -> None:
        self.spacing = None if self.spacing is None else tuple(float(s) for s in self.spacing)
        self.patch_size = tuple(int(p) for p in self.patch_size)
        self.modalities = tuple(str(m) for m in self.modalities)
        self.labels = tuple((int(v), str(n)) for v, n in self.labels)
        self.hyper_parameters = copy.deepcopy(dict(self.hyper_parameters))
        self.sliding_window = dict(self.sliding_window)
        self.validate()

    @property
    def in_channels(self) -> int:
        return len(self.modalities)

    @property
    def out_channels(self) -> int:
        return len(self.labels)

    @property
    def label_values(self) -> tuple[int, ...]:
        return tuple(v for v, _ in self.labels)

    def validate(self) -> None:
        """Refuse configs that cannot describe a working model, with a one-line reason."""
        arch = self.architecture
        prefixed = any(arch.startswith(p) and len(arch) > len(p) for p in (MONAI_PREFIX, *IMPORTED_PREFIXES))
        if arch not in BUILTIN_ARCHITECTURES and not prefixed:
            raise ParameterError(
                f"architecture '{arch}' is unknown; use {', '.join(BUILTIN_ARCHITECTURES)} or 'monai:<Network>' "
                "(e.g. monai:SegResNet)"
            )
        if len(self.patch_size) != 3 or min(self.patch_size) < 4:
            raise ParameterError(f"patch_size {list(self.patch_size)} must be three sizes of at least 4 voxels")
        if self.spacing is not None and (len(self.spacing) != 3 or min(self.spacing) <= 0):
            raise ParameterError(f"spacing {list(self.spacing)} must be three positive sizes in mm (or null)")
        if self.normalisation not in NORMALISATIONS:
            raise ParameterError(
                f"normalisation '{self.normalisation}' is unknown; use one of {', '.join(NORMALISATIONS)}"
            )
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or len(set(self.modalities)) != len(self.modalities) or not self.modalities:
            raise ParameterError(
                f"modalities {list(self.modalities)} must be distinct names from {', '.join(MODALITIES)}"
            )
        values = self.label_values
        if len(values) < 2 or len(set(values)) != len(values) or values[0] != 0 or min(values) < 0 or max(values) > 255:
            raise ParameterError(f"labels {list(values)} must be distinct values 0-255 starting with background 0")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["spacing"] = None if self.spacing is None else list(self.spacing)
        data["patch_size"] = list(self.patch_size)
        data["modalities"] = list(self.modalities)
        data["labels"] = [{"value": v, "name": n} for v, n in self.labels]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "model config") -> ModelConfig:
        """Build a config from JSON; unknown or missing keys are a one-line `ParameterError`."""
        if not isinstance(data, dict):
            raise ParameterError(f"{source}: a JSON object is expected")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParameterError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        if not isinstance(data.get("architecture"), str):
            raise ParameterError(f"{source}: 'architecture' is missing or not a name")
        values = dict(data)
        if "labels" in values:
            try:
                values["labels"] = [(int(item["value"]), str(item["name"])) for item in values["labels"]]
            except (TypeError, KeyError, ValueError):
                raise ParameterError(f"{source}: labels must be a list of {{'value': int, 'name': str}}") from None
        try:
            return cls(**values)
        except (TypeError, ValueError, ParameterError) as exc:
            raise ParameterError(f"{source}: {exc}") from None


def default_config(architecture: str, **overrides: Any) -> ModelConfig:
    """The project's default config for 'unet' or 'segformer' (spacing is set by training)."""
    if architecture not in DEFAULT_HYPER_PARAMETERS:
        raise ParameterError(f"no default config for '{architecture}'; use unet or segformer, or write a config file")
    values = {
        "hyper_parameters": DEFAULT_HYPER_PARAMETERS[architecture],
        "patch_size": DEFAULT_PATCHES[architecture],
        **overrides,
    }
    return ModelConfig(architecture=architecture, **values)


def tiny_config(architecture: str, **overrides: Any) -> ModelConfig:
    """A very small network on 16^3 patches, for fast tests of code that uses models."""
    if architecture not in TINY_HYPER_PARAMETERS:
        raise ParameterError(f"no tiny config for '{architecture}'; use unet or segformer")
    values = {
        "hyper_parameters": TINY_HYPER_PARAMETERS[architecture],
        "patch_size": TINY_PATCH,
        "sliding_window": {"overlap": 0.25, "mode": "gaussian", "batch_size": 4},
        **overrides,
    }
    return ModelConfig(architecture=architecture, **values)
