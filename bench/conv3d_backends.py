#!/usr/bin/env python3
"""CPU segmentation with 3D convolutions routed to oneDNN (what MedSegLens runs) vs PyTorch's own choice.

    python bench/conv3d_backends.py [--unet MODEL_DIR] [--segformer MODEL_DIR] [--batch N] [--repeats 5]

PyTorch sends small CPU convolutions (batch x channels x depth x height <= 20480) to a native kernel
that is slow for 3D windows; `MedSegLensLib/models/cpu_convolution.py` routes them to oneDNN. This
times `predict` on one synthetic 2 mm case both ways, interleaved, per network, and prints best and
median seconds, the ratio (PyTorch's choice / routed, best vs best) and how far the results differ
(largest logit difference, voxels whose label changes). `--batch` overrides the sliding-window batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from inference_speed import model_for, synthetic_case
from torch import nn

from MedSegLensLib.models.cpu_convolution import OneDNNConv3d


def pytorch_kernels(network: nn.Module) -> nn.Module:
    """Undo the routing, in place: every OneDNNConv3d back to a plain Conv3d."""
    for module in network.modules():
        if type(module) is OneDNNConv3d:
            module.__class__ = nn.Conv3d
    return network


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unet", help="U-Net model folder (default: default config, random weights)")
    parser.add_argument("--segformer", help="SegFormer model folder (default: default config, random weights)")
    parser.add_argument("--batch", type=int, help="sliding-window batch size (default: the model's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    case = synthetic_case(2.0)
    print(f"case {'x'.join(map(str, case.shape))} at 2 mm; {args.threads} thread(s); best / median of {args.repeats}")
    print(f"{'model':<10} {'batch':>5} {'routed s':>9} {'pytorch s':>10} {'ratio':>6} {'max |dz|':>9} {'labels':>7}")
    for arch in ("unet", "segformer"):
        routed = model_for(arch, getattr(args, arch), 2.0, "cpu")
        if args.batch:
            routed.config.sliding_window["batch_size"] = args.batch
        plain = model_for(arch, getattr(args, arch), 2.0, "cpu")
        plain.network.load_state_dict(routed.network.state_dict())
        plain.config.sliding_window = dict(routed.config.sliding_window)
        pytorch_kernels(plain.network)
        prepared = routed.prepare(case)
        seconds: dict[str, list[float]] = {"routed": [], "pytorch": []}
        for _ in range(args.repeats):
            for name, model in (("routed", routed), ("pytorch", plain)):
                start = time.perf_counter()
                logits = model.logits(prepared)
                seconds[name].append(time.perf_counter() - start)
        a, b = routed.logits(prepared), plain.logits(prepared)
        flips = int((a.argmax(1) != b.argmax(1)).sum())
        best = {name: min(values) for name, values in seconds.items()}
        median = {name: statistics.median(values) for name, values in seconds.items()}
        print(
            f"{arch:<10} {routed.config.sliding_window.get('batch_size', 1):>5} "
            f"{best['routed']:>4.2f}/{median['routed']:<4.2f} {best['pytorch']:>5.2f}/{median['pytorch']:<4.2f} "
            f"{best['pytorch'] / best['routed']:>6.2f} {float((a - b).abs().max()):>9.1e} {flips:>7}"
        )
        del logits
    return 0


if __name__ == "__main__":
    sys.exit(main())
