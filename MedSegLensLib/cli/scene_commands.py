"""`medseglens render`: slice views of a case, a segmentation and a latent map, via Slicer's slice logic.

A latent map is drawn as the viewer and the Slicer module draw it (`latent_focus`, the shared rule): a heat colour
map over the latent's own p50..p99 in this case, transparent below the threshold (default p50), the slices through
where it fires most, and a legend row in activation units under the views (also stored as the PNG's "Legend" text).
"""

from __future__ import annotations

import argparse

import numpy as np

from ..data import MODALITIES, read_volume
from ..data.geometry import resample_to_grid, to_canonical
from ..errors import ParameterError
from ..fileio import check_can_write
from ..latent_focus import HEAT_COLORMAP, LatentFocus, latent_focus, legend_text
from .case_args import add_case_arguments, case_files_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render", help="render slice views (MRI, latent map overlay, segmentation) to PNG, headless"
    )
    add_case_arguments(parser)  # --seg: the label file to draw (default: the case folder's -seg file)
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--no-segmentation", action="store_true", help="draw no segmentation")
    parser.add_argument("--map", help="activation map file (NIfTI/NRRD) to overlay")
    parser.add_argument(
        "--threshold",
        type=float,
        help="overlay threshold in activation units (default: the map's median positive activation, p50)",
    )
    parser.add_argument("--latent", type=int, help="latent index the map shows (named in the legend)")
    parser.add_argument("--modality", choices=MODALITIES, default="t1c", help="background image (default t1c)")
    parser.add_argument("--view", choices=["axial", "coronal", "sagittal", "all"], default="all")
    parser.add_argument(
        "--position",
        type=float,
        nargs=3,
        metavar=("R", "A", "S"),
        help="RAS point (mm) the slices pass through; default: where the map fires most, else the tumour centre",
    )
    parser.add_argument(
        "--fill", action="store_true", help="fill segments (half transparent) instead of outlining them"
    )
    parser.add_argument("--size", type=int, default=384, help="pixels per view side (default 384)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    parser.set_defaults(handler=run)


def _map_on_case_grid(path: str, case) -> np.ndarray:
    volume = read_volume(path)
    array, grid = to_canonical(volume.array.astype(np.float32), volume.grid)
    return resample_to_grid(array, grid, case.grid, order=1)


def _default_position(case, focus: LatentFocus | None) -> np.ndarray:
    ras = None if focus is None else focus.focus_ras(case.grid.affine)
    if ras is not None:
        return np.asarray(ras)
    if case.label is not None and case.label.any():
        voxel = np.argwhere(case.label > 0).mean(axis=0).round()
    else:
        voxel = (np.array(case.grid.shape) - 1) / 2
    return (case.grid.affine @ np.append(np.asarray(voxel, dtype=float), 1.0))[:3]


def _legend(focus: LatentFocus, threshold: float, latent: int | None, position: np.ndarray) -> str:
    legend = focus.legend(threshold)
    legend.update(latent=latent, focus_ras=[float(v) for v in position])
    text = legend_text(legend) + f" · transparent below {threshold:.3g}"
    return text if focus.focus_voxel is not None else text + " · never positive here"


def run(args: argparse.Namespace) -> int:
    from ..scene import (
        add_brats_segmentation,
        add_case_volumes,
        add_latent_overlay,
        create_headless_slicer,
        legend_strip,
        render_orthogonal,
        render_slice,
        set_overlay_window,
        write_png,
    )

    if args.size < 16:
        raise ParameterError(f"--size {args.size} is too small; use at least 16 pixels")
    check_can_write(args.out, args.overwrite)
    case = case_files_from_args(args).load(with_labels=not args.no_segmentation)
    activation = _map_on_case_grid(args.map, case) if args.map else None
    focus = latent_focus(activation) if activation is not None else None
    headless = create_headless_slicer()
    scene = headless.scene
    nodes = add_case_volumes(scene, case)
    background = nodes.volumes[args.modality]
    overlay = segmentation = None
    if focus is not None:
        threshold = focus.low if args.threshold is None else float(args.threshold)
        overlay = add_latent_overlay(
            scene, activation, case.grid, background, "latent map", threshold=threshold, colormap_id=HEAT_COLORMAP
        )
        set_overlay_window(overlay, *focus.window())
    if case.label is not None:
        segmentation = add_brats_segmentation(scene, case.label, case.grid, background, "segmentation")
    position = np.asarray(args.position) if args.position else _default_position(case, focus)
    style = dict(foreground_opacity=0.8, outline=not args.fill, segmentation_opacity=0.5 if args.fill else 1.0)
    if args.view == "all":
        rgb = render_orthogonal(scene, background, overlay, segmentation, position, size=args.size, **style)
    else:
        rgb = render_slice(
            scene, background, overlay, segmentation, args.view, position, (args.size, args.size), **style
        ).rgb
    text = {}
    if focus is not None:
        text["Legend"] = _legend(focus, threshold, args.latent, position)
        rgb = np.concatenate([rgb, legend_strip(scene, HEAT_COLORMAP, text["Legend"], rgb.shape[1])], axis=0)
    write_png(rgb, args.out, overwrite=args.overwrite, text=text)
    print(f"{args.out}: {args.view} view(s) of {case.case_id} through RAS {', '.join(f'{v:.1f}' for v in position)} mm")
    if focus is not None:
        print(f"legend: {text['Legend']}")
    return 0
