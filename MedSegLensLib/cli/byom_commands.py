"""`medseglens import-model | convert-checkpoint`: bring your own nnU-Net, MONAI bundle or PyTorch network."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    imp = subparsers.add_parser(
        "import-model",
        help="make a MedSegLens model folder from an nnU-Net v2 model, "
        "a MONAI bundle, a state dict or TorchScript weights",
    )
    imp.add_argument("source", metavar="SRC", help="nnU-Net trained-model folder, bundle folder, or weights file")
    imp.add_argument(
        "--format", required=True, dest="fmt", choices=["monai-bundle", "nnunetv2", "state-dict", "torchscript"]
    )
    imp.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to write")
    imp.add_argument("--fold", help="nnU-Net fold to import (0-4 or all; default 0, or the only one)")
    imp.add_argument(
        "--checkpoint", metavar="NAME", help="nnU-Net checkpoint file in the fold (default checkpoint_final)"
    )
    imp.add_argument(
        "--channels",
        metavar="M1,M2,...",
        help="modality of each input channel in order, from t1n,t1c,t2w,t2f (default: read from "
        "dataset.json / the bundle's metadata, or the network JSON)",
    )
    imp.add_argument(
        "--network",
        metavar="NET.json",
        dest="network_json",
        help="state-dict/torchscript: model config naming the MONAI network and its arguments",
    )
    imp.add_argument("--key", help="state-dict: entry of the checkpoint that holds the tensors (e.g. state_dict)")
    imp.add_argument(
        "--input-orientation",
        metavar="CODES",
        help="voxel order the network was trained on when its source does not reorient "
        "(e.g. LPS, RAS, or as-stored; default LPS, the order of BraTS files)",
    )
    imp.add_argument(
        "--output-names",
        metavar="N1,N2,...",
        help="names of the model's foreground outputs in order, e.g. edema,necrosis,enhancing",
    )
    imp.add_argument(
        "--mirroring", action="store_true", help="nnU-Net: test-time mirroring (hooks then see every flip)"
    )
    imp.add_argument("--overwrite", action="store_true", help="replace MODEL_DIR")
    imp.set_defaults(handler=run_import)

    conv = subparsers.add_parser(
        "convert-checkpoint",
        help="extract a PyTorch checkpoint's tensors into safetensors without running anything from it",
    )
    conv.add_argument("source", metavar="IN.pth")
    conv.add_argument("--out", required=True, metavar="OUT.safetensors")
    conv.add_argument("--key", help="entry that holds the tensors (default: found automatically)")
    conv.add_argument("--overwrite", action="store_true")
    conv.set_defaults(handler=run_convert)


def run_import(args: argparse.Namespace) -> int:
    from ..models import load_model
    from ..models.external import import_model

    names = [n.strip() for n in args.output_names.split(",")] if args.output_names else None
    fingerprint = import_model(
        args.source,
        args.fmt,
        args.out,
        fold=args.fold,
        channels=args.channels,
        network_json=args.network_json,
        input_orientation=args.input_orientation,
        output_names=names,
        checkpoint=args.checkpoint,
        key=args.key,
        mirroring=args.mirroring,
        overwrite=args.overwrite,
    )
    model = load_model(args.out, device="cpu")
    config = model.config
    labels = ", ".join(f"{v} {n}" for v, n in config.labels)
    print(
        f"{args.out}: {config.architecture}, weights {fingerprint[:12]}, inputs {','.join(config.modalities)}, "
        f"patch {'x'.join(map(str, config.patch_size))}, labels {labels}"
    )
    meaning = getattr(model, "outputs", None)
    if meaning is not None and not meaning.brats:
        print(
            f"note: outputs ({', '.join(meaning.names)}) are not the BraTS labels or regions; the model's own labels "
            "are kept (name them with --output-names to map them)"
        )
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from ..models.external import convert_checkpoint

    result = convert_checkpoint(args.source, args.out, key=args.key, overwrite=args.overwrite)
    print(f"{result.out}: {result.tensors} tensors, sha256 {result.sha256[:12]} (details in {result.sidecar.name})")
    if result.not_run:
        print(
            f"not run (left as inert placeholders): {', '.join(result.not_run[:8])}"
            + (f" and {len(result.not_run) - 8} more" if len(result.not_run) > 8 else "")
        )
    return 0
