"""MONAI bundle models at run time: the bundle's own MONAI network, transforms and inferer.

Everything is rebuilt from the plain description stored at import (class names
from allowed MONAI namespaces and literal arguments), never from the bundle's
config expressions. The case enters as a MetaTensor in the bundle's input
voxel order with its affine, so MONAI's Orientation/Spacing transforms act on
it exactly as on the files `LoadImaged` would have read; the network grid is
the MetaTensor's affine after preprocessing.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import monai.inferers as monai_inferers
import monai.networks.nets as monai_nets
import monai.transforms as monai_transforms
import numpy as np
import torch
from monai.data import MetaTensor
from torch import nn

from ...data import Case, Grid
from ...errors import CompatibilityError
from ..inference import Prediction, PreparedInput
from .bundle_config import component
from .imported_model import ImportedModel
from .orientation import onto_case_grid
from .semantics import region_paint_order


def _classes(module, names) -> dict[str, Any]:
    return {name: getattr(module, name) for name in names if hasattr(module, name)}


NETWORKS = {name: obj for name, obj in vars(monai_nets).items() if isinstance(obj, type) and issubclass(obj, nn.Module)}
# Deterministic array transforms applied to the case (dictionary and array forms).
APPLIED_TRANSFORMS = _classes(
    monai_transforms,
    [
        f"{base}{d}"
        for base in (
            "Orientation",
            "Spacing",
            "NormalizeIntensity",
            "ScaleIntensity",
            "ScaleIntensityRange",
            "ScaleIntensityRangePercentiles",
            "CropForeground",
            "SpatialPad",
            "DivisiblePad",
            "CastToType",
            "ClipIntensityPercentiles",
        )
        for d in ("", "d")
    ],
)
# Reading, channel-first, typing and device moves: the case already is a channel-first tensor.
SKIPPED_TRANSFORMS = _classes(
    monai_transforms,
    [
        f"{base}{d}"
        for base in (
            "LoadImage",
            "EnsureChannelFirst",
            "EnsureType",
            "ToTensor",
            "ToDevice",
            "Identity",
            "SaveImage",
        )
        for d in ("", "d")
    ],
)
INFERERS = _classes(monai_inferers, ["SlidingWindowInferer", "SimpleInferer"])


def build_network(description: dict[str, Any], config, source: str) -> nn.Module:
    name, args = component(
        {"_target_": description["network"]["target"], **description["network"]["args"]},
        NETWORKS,
        "network_def",
        source,
    )
    try:
        return NETWORKS[name](**args)
    except (TypeError, ValueError, AssertionError) as exc:
        raise CompatibilityError(
            f"{source}: MONAI {name} rejects the bundle's arguments ({' '.join(str(exc).split())[:120]})"
        ) from None


def build_transform(spec: dict[str, Any], image_key: str, source: str):
    name, args = component({"_target_": spec["target"], **spec["args"]}, APPLIED_TRANSFORMS, "preprocessing", source)
    if name.endswith("d"):
        args = {**args, "keys": image_key, "allow_missing_keys": True}
    return APPLIED_TRANSFORMS[name](**args), name.endswith("d")


class BundleModel(ImportedModel):
    """A MONAI bundle's network fed by its preprocessing, windows and activation."""

    @cached_property
    def _pipeline(self) -> dict[str, Any]:
        source = str(self.model_dir)
        transforms = [
            build_transform(spec, self.description["image_key"], source) for spec in self.description["preprocessing"]
        ]
        name, args = component(
            {"_target_": self.description["inferer"]["target"], **self.description["inferer"]["args"]},
            INFERERS,
            "inferer",
            source,
        )
        return {"transforms": transforms, "inferer": INFERERS[name](**args)}

    def prepare(self, case: Case) -> PreparedInput:
        array, grid = self.input_array(case)
        key = self.description["image_key"]
        data: Any = MetaTensor(torch.from_numpy(array.astype(np.float32)), affine=torch.as_tensor(grid.affine))
        for transform, on_dict in self._pipeline["transforms"]:
            data = transform({key: data})[key] if on_dict else transform(data)
        affine = np.asarray(data.affine, dtype=float)
        net_grid = Grid(tuple(int(s) for s in data.shape[-3:]), affine)
        tensor = data.as_tensor().float()[None].to(self.device)
        return PreparedInput(tensor, net_grid, case.grid, not net_grid.same_as(case.grid), case.case_id)

    def run_windows(self, network: nn.Module, prepared: PreparedInput) -> torch.Tensor:
        return self._pipeline["inferer"](inputs=prepared.tensor, network=network)

    def to_prediction(self, logits: torch.Tensor, prepared: PreparedInput, probabilities: bool = False) -> Prediction:
        """The bundle's activation (sigmoid regions or softmax classes), back on the case grid, then labels."""
        post = self.description["postprocessing"]
        scores = logits[0].float().cpu()
        probs = torch.sigmoid(scores) if post["activation"] == "sigmoid" else torch.softmax(scores, dim=0)
        probs = onto_case_grid(probs.numpy(), prepared.grid, prepared.case_grid, order=1)
        if self.outputs.kind == "regions":
            painted = np.zeros(probs.shape[1:], dtype=np.int64)
            for channel in region_paint_order(self.outputs):
                painted[probs[channel] >= float(post["threshold"])] = self.outputs.values[channel]
        else:
            painted = np.asarray(self.outputs.values)[probs.argmax(0)]
        return self.prediction(self.outputs.table()[painted], prepared, probs if probabilities else None)


MODEL_CLASS = BundleModel
