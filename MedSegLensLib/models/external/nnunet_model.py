"""nnU-Net v2 models at run time, through nnU-Net's own code.

The network comes from the plans through nnU-Net's `get_network_from_plans`
(architectures from `dynamic-network-architectures`), after checking that the
plans name only those architectures and `torch.nn` building blocks (nnU-Net
would otherwise import whatever dotted name the file holds). Preprocessing
(transpose, crop to non-zero, the plans' normalisation schemes, resampling to
the plans' spacing), the Gaussian sliding windows and the way back (resampling
the logits, nnU-Net's label or region decoding, un-cropping) are nnU-Net's own
functions, so a case gives what `nnUNetPredictor` gives (tested).
"""

from __future__ import annotations

import inspect
import pydoc
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn

from ...data import Case, Grid
from ...errors import CompatibilityError
from ..inference import Prediction, PreparedInput
from .imported_model import ImportedModel
from .orientation import onto_case_grid

ARCHITECTURES = tuple(
    f"dynamic_network_architectures.architectures.unet.{name}" for name in ("PlainConvUNet", "ResidualEncoderUNet")
)
INSTALL_HINT = "install MedSegLens's byom extra (python3 dev.py test installs it; see docs/byom.md)"


def require_nnunet() -> None:
    try:
        import dynamic_network_architectures  # noqa: F401
        import nnunetv2  # noqa: F401
    except ImportError as exc:
        raise CompatibilityError(
            f"nnU-Net v2 models need the nnunetv2 package ({exc.name} is missing); {INSTALL_HINT}"
        ) from None


def architecture_of(plans: dict, configuration: str, source: str) -> dict[str, Any]:
    """The configuration's architecture entry, refused unless it names a known U-Net and torch.nn blocks only."""
    configs = plans.get("configurations") if isinstance(plans, dict) else None
    if not isinstance(configs, dict) or configuration not in configs:
        known = ", ".join(configs) if isinstance(configs, dict) else "none"
        raise CompatibilityError(f"{source}: plans have no configuration '{configuration}' (known: {known})")
    entry = configs[configuration]
    if "inherits_from" in entry or entry.get("previous_stage"):
        entry = {**configs.get(entry.get("inherits_from"), {}), **entry}
    if entry.get("previous_stage"):
        raise CompatibilityError(
            f"{source}: configuration '{configuration}' is a cascade stage (it needs the "
            "previous stage's segmentation); import a single-stage configuration"
        )
    arch = entry.get("architecture")
    if not isinstance(arch, dict) or arch.get("network_class_name") not in ARCHITECTURES:
        name = arch.get("network_class_name") if isinstance(arch, dict) else None
        raise CompatibilityError(
            f"{source}: network class '{name}' is not supported; MedSegLens builds "
            f"{', '.join(a.rsplit('.', 1)[1] for a in ARCHITECTURES)} from nnU-Net plans"
        )
    kwargs = arch.get("arch_kwargs", {})
    for key in arch.get("_kw_requires_import", ()):
        value = kwargs.get(key)
        if value is None:
            continue
        located = pydoc.locate(value) if isinstance(value, str) and value.startswith("torch.nn.") else None
        if not (inspect.isclass(located) and issubclass(located, nn.Module)):
            raise CompatibilityError(f"{source}: plans entry {key}='{value}' is not a torch.nn layer class; refused")
    return arch


def build_network(description: dict[str, Any], config, source: str) -> nn.Module:
    require_nnunet()
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = architecture_of(description["plans"], description["configuration"], source)
    return get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch["_kw_requires_import"],
        config.in_channels,
        int(description["num_outputs"]),
        allow_init=False,
        deep_supervision=False,
    )


@dataclass
class NnUNetInput(PreparedInput):
    """A prepared case plus what nnU-Net needs to go back: its properties (crop box, shapes, spacing)."""

    properties: dict = field(default_factory=dict)
    input_grid: Grid | None = None


def preprocessed_grid(input_grid: Grid, properties: dict, transpose: list[int], shape: tuple[int, ...]) -> Grid:
    """The grid of nnU-Net's preprocessed array: transposed, cropped to the box, resampled with aligned corners."""
    affine = input_grid.affine.copy()
    affine[:, :3] = affine[:, transpose]
    start = np.array([b[0] for b in properties["bbox_used_for_cropping"]], dtype=float)
    cropped = np.array(properties["shape_after_cropping_and_before_resampling"], dtype=float)
    ratio = cropped / np.asarray(shape, dtype=float)
    affine[:3, 3] = affine[:3, :3] @ (start + 0.5 * ratio - 0.5) + affine[:3, 3]
    affine[:3, :3] = affine[:3, :3] * ratio
    return Grid(tuple(int(s) for s in shape), affine)


class NnUNetModel(ImportedModel):
    """An nnU-Net v2 fold, fed and decoded by nnU-Net's own preprocessing, windows and export code."""

    @cached_property
    def _nnunet(self) -> dict[str, Any]:
        require_nnunet()
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        plans_manager = PlansManager(self.description["plans"])
        configuration = plans_manager.get_configuration(self.description["configuration"])
        return {
            "plans": plans_manager,
            "configuration": configuration,
            "labels": plans_manager.get_label_manager(self.description["dataset_json"]),
            "preprocessor": configuration.preprocessor_class(verbose=False),
        }

    def prepare(self, case: Case) -> NnUNetInput:
        """nnU-Net's `run_case_npy` on the case in nnU-Net's axis order (SimpleITK's: the codes reversed)."""
        parts = self._nnunet
        array, grid = self.input_array(case, reverse_axes=True)
        properties = {"spacing": list(grid.spacing)}
        data, _, properties = parts["preprocessor"].run_case_npy(
            array, None, properties, parts["plans"], parts["configuration"], self.description["dataset_json"]
        )
        tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[None].to(self.device)
        net_grid = preprocessed_grid(grid, properties, list(parts["plans"].transpose_forward), data.shape[1:])
        return NnUNetInput(tensor, net_grid, case.grid, True, case.case_id, properties=properties, input_grid=grid)

    def run_windows(self, network: nn.Module, prepared: PreparedInput) -> torch.Tensor:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        parts = self._nnunet
        window = self.config.sliding_window
        predictor = nnUNetPredictor(
            tile_step_size=1.0 - float(window.get("overlap", 0.5)),
            use_gaussian=True,
            use_mirroring=bool(window.get("mirroring", False)),
            perform_everything_on_device=False,
            device=self.device,
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )
        predictor.manual_initialization(
            network,
            parts["plans"],
            parts["configuration"],
            None,
            self.description["dataset_json"],
            self.description.get("trainer", ""),
            _mirror_axes(self.description.get("mirroring_axes")),
        )
        return predictor.predict_sliding_window_return_logits(prepared.tensor[0])

    def to_prediction(self, logits: torch.Tensor, prepared: PreparedInput, probabilities: bool = False) -> Prediction:
        """nnU-Net's own export (resample logits, labels or regions, un-crop), then BraTS values on the case grid."""
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        parts = self._nnunet
        # nnU-Net accumulates its windows in float16, so `logits` hold float16 values: exporting them as float16
        # (lossless) reproduces nnU-Net's probabilities bit for bit
        out = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits[0].cpu().half(),
            parts["plans"],
            parts["configuration"],
            parts["labels"],
            dict(prepared.properties),
            return_probabilities=probabilities,
        )
        segmentation, probs = out if probabilities else (out, None)
        labels = onto_case_grid(
            self.outputs.table()[np.asarray(segmentation)], prepared.input_grid, prepared.case_grid, order=0
        )
        if probs is not None:
            probs = onto_case_grid(
                np.asarray(probs, dtype=np.float32), prepared.input_grid, prepared.case_grid, order=1
            )
        return self.prediction(labels, prepared, probs)

    def layer_roles(self) -> list[tuple[str, str]]:
        """Encoder stages (the last is the bottleneck), decoder stages, and the final segmentation layer."""
        stages = len(self.network.encoder.stages)
        roles = [
            (f"encoder.stages.{i}", "bottleneck" if i == stages - 1 else f"encoder stage {i + 1}")
            for i in range(stages)
        ]
        roles += [(f"decoder.stages.{i}", f"decoder stage {i + 1}") for i in range(len(self.network.decoder.stages))]
        roles.append((f"decoder.seg_layers.{len(self.network.decoder.seg_layers) - 1}", "head (logits)"))
        return roles


def _mirror_axes(axes) -> tuple[int, ...] | None:
    return None if axes is None else tuple(int(a) for a in axes)


MODEL_CLASS = NnUNetModel
