"""`medseglens latents`: a case's active latents (the Slicer module's latent browser) and one latent's map.

Runs the worker's `encode` and `latent_map` jobs in this process (the same code
the Slicer module and the browser viewer reach through the background worker).
The map file is what `medseglens render --map` overlays.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..errors import ParameterError
from ..fileio import check_can_write, write_json_atomic
from .case_args import add_case_arguments, case_files_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("latents", help="list a case's active SAE latents; write one latent's map")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR")
    parser.add_argument("--sae", required=True, metavar="SAE_DIR")
    add_case_arguments(parser, with_seg=False)
    parser.add_argument(
        "--labels", metavar="LATENTS_JSON", help="interpretation (default: latents.json in the SAE folder)"
    )
    parser.add_argument("--populations", metavar="POPULATIONS_JSON", help="population diff of this SAE")
    parser.add_argument("--sort", choices=["activation", "latent", "category", "specificity"], default="activation")
    parser.add_argument("--filter", default="", metavar="TEXT", help="only rows containing every word of TEXT")
    parser.add_argument("--top", type=int, default=20, help="rows to print (default 20; 0: all)")
    parser.add_argument("--json", metavar="FILE", help="also write every row as JSON")
    parser.add_argument("--map", type=int, metavar="LATENT", help="write this latent's map (input grid and geometry)")
    parser.add_argument("--out", metavar="FILE", help="map file to write (.nii.gz, .nii or .nrrd); needs --map")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(handler=run)


SORT_COLUMNS = {"latent": 0, "category": 1, "activation": 3, "specificity": 4}


def _context(output_dir: Path):
    from tqdm import tqdm

    from ..worker.registry import JobContext, WorkerCache

    bar = tqdm(total=100, desc="latents", unit="%", leave=False)

    def emit(message: dict) -> None:
        if message.get("type") == "progress":
            bar.n = round(100 * message["fraction"])
            bar.set_postfix_str(message.get("message", ""))
        elif message.get("type") == "log":
            tqdm.write(message["message"])

    return JobContext("cli", emit, WorkerCache(), output_dir), bar


def run(args: argparse.Namespace) -> int:
    from ..data import read_volume, write_volume
    from ..latent_browser import LatentTable
    from ..worker import latent_jobs

    if (args.map is None) != (args.out is None):
        raise ParameterError("--map LATENT and --out FILE go together: name the latent and the file for its map")
    out = check_can_write(args.out, args.overwrite) if args.out else None
    if args.json:
        check_can_write(args.json, args.overwrite)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    files = case_files_from_args(args)
    params = {
        "model": args.model,
        "sae": args.sae,
        "case": files.modalities,
        "case_id": files.case_id,
        "labels": args.labels,
        "populations": args.populations,
    }
    with tempfile.TemporaryDirectory(prefix="medseglens-latents-") as scratch:
        ctx, bar = _context(Path(scratch))
        try:
            data = latent_jobs.encode(params, ctx)
            mapped = latent_jobs.latent_map({**params, "latent": args.map}, ctx) if out is not None else None
            if mapped is not None:
                volume = read_volume(mapped["map"])
                write_volume(volume.array, volume.grid, out)
        finally:
            bar.close()
    table = LatentTable.from_result(data)
    table.filter_text = args.filter
    column = SORT_COLUMNS[args.sort]
    table.set_sort(column, descending=column in (3, 4))
    rows = table.view()
    print(
        f"{data['case_id']}: {len(table)} active latents of {data['sae']['n_latents']} at {data['sae']['layer']}"
        + (f", {len(rows)} match {args.filter!r}" if args.filter else "")
    )
    for row in rows if args.top == 0 else rows[: args.top]:
        print("  " + " | ".join(cell for cell in row.cells() if cell))
    if args.json:
        write_json_atomic(args.json, {key: value for key, value in data.items() if key != "segmentation"})
    if mapped is not None:
        peak = ", ".join(f"{v:.1f}" for v in mapped["peak_ras"])
        print(f"{out}: map of latent {args.map}, peak {mapped['peak']:.3g} at RAS {peak} mm")
    return 0
