"""A real MONAI bundle folder, made with MONAI's own bundle code.

configs/inference.json is a typical bundle config (expressions for the
device and the network's placement, a Compose of LoadImaged ... EnsureTyped,
a Gaussian SlidingWindowInferer, sigmoid + Invertd + threshold
postprocessing); the network is built from it by `monai.bundle.ConfigParser`,
trained for a few steps with MONAI's DiceLoss and saved as models/model.pt;
`monai.bundle.ckpt_export` writes the TorchScript models/model.ts from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

INPUT_CHANNELS = {"0": "T1c", "1": "T1", "2": "T2", "3": "FLAIR"}  # not MedSegLens's order, on purpose
OUTPUT_CHANNELS = {"0": "TC", "1": "WT", "2": "ET"}
PIXDIM = [1.5, 1.5, 1.5]
ROI = [16, 16, 16]


def inference_config(pixdim=PIXDIM) -> dict:
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "image_key": "image",
        "network_def": {
            "_target_": "UNet",
            "spatial_dims": 3,
            "in_channels": 4,
            "out_channels": 3,
            "channels": [4, 8, 16],
            "strides": [2, 2],
            "num_res_units": 1,
        },
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "@image_key"},
                {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
                {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": "@image_key", "pixdim": pixdim, "mode": "bilinear"},
                {"_target_": "NormalizeIntensityd", "keys": "@image_key", "nonzero": True, "channel_wise": True},
                {"_target_": "EnsureTyped", "keys": "@image_key"},
            ],
        },
        "inferer": {
            "_target_": "SlidingWindowInferer",
            "roi_size": ROI,
            "sw_batch_size": 2,
            "overlap": 0.5,
            "mode": "gaussian",
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
                {
                    "_target_": "Invertd",
                    "keys": "pred",
                    "transform": "@preprocessing",
                    "orig_keys": "@image_key",
                    "nearest_interp": False,
                    "to_tensor": True,
                },
                {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5},
            ],
        },
    }


def metadata() -> dict:
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": "0.1.0",
        "name": "tiny_brats_segmentation",
        "monai_version": "1.6.1",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "num_channels": 4,
                    "spatial_shape": ROI,
                    "dtype": "float32",
                    "channel_def": INPUT_CHANNELS,
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": 3,
                    "spatial_shape": ROI,
                    "dtype": "float32",
                    "channel_def": OUTPUT_CHANNELS,
                }
            },
        },
    }


def build_bundle(root: Path, seed: int = 0, steps: int = 3, torchscript: bool = True, pixdim=PIXDIM) -> Path:
    """Write the bundle folder; return it."""
    from monai.bundle import ConfigParser, ckpt_export
    from monai.losses import DiceLoss

    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    (root / "configs" / "inference.json").write_text(json.dumps(inference_config(pixdim), indent=2))
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata(), indent=2))
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    torch.manual_seed(seed)
    network = parser.get_parsed_content("network_def")
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    rng = np.random.default_rng(seed)
    loss = DiceLoss(sigmoid=True)
    for _ in range(steps):
        image = torch.from_numpy(rng.normal(size=(2, 4, *ROI)).astype(np.float32))
        target = (image[:, 1:2] > 0.5).float().repeat(1, 3, 1, 1, 1)
        optimiser.zero_grad()
        loss(network(image), target).backward()
        optimiser.step()
    torch.save(network.state_dict(), root / "models" / "model.pt")
    if torchscript:
        ckpt_export(
            net_id="network_def",
            filepath=str(root / "models" / "model.ts"),
            ckpt_file=str(root / "models" / "model.pt"),
            meta_file=str(root / "configs" / "metadata.json"),
            config_file=str(root / "configs" / "inference.json"),
            bundle_root=str(root),
        )
    return root
