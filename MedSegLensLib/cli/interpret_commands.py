"""`medseglens interpret | interpret-compare`: label every SAE latent from the ground truth of cohorts."""

from __future__ import annotations

import argparse
import shlex
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "interpret",
        help="score, categorise and describe every latent of an SAE on labelled cohorts; cards and a gallery",
        description="Writes DIR/latents.json, latents.csv, scores.csv, categories.png, cards/*.png, gallery.html "
        "and a report section (section.json). See docs/interpret.md.",
    )
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="the segmentation model the SAE belongs to")
    parser.add_argument("--sae", required=True, metavar="SAE_DIR", help="an SAE folder (sae.json + sae.safetensors)")
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="cohort folders with label maps (tissue maps and -atlas files are used when present)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="new output folder")
    parser.add_argument(
        "--cards", type=int, default=6, metavar="N", help="cards for the N strongest latents per category"
    )
    parser.add_argument(
        "--shell-mm", type=float, default=4.0, help="tumour-boundary shell half-width in mm (default 4)"
    )
    parser.add_argument(
        "--min-firing-ml",
        type=float,
        default=0.1,
        help="a latent fires in a case when active on at least this volume (default 0.1 ml)",
    )
    parser.add_argument(
        "--bins-per-octave", type=int, default=4, help="histogram resolution (default 4: bins 1.19x wide)"
    )
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--device", help="cpu, cuda (default: a GPU when present)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)

    compare = subparsers.add_parser(
        "interpret-compare", help="category distributions of several interpret runs side by side (per architecture)"
    )
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders written by `medseglens interpret`")
    compare.add_argument("--out", required=True, metavar="DIR", help="new folder for categories.png and section.json")
    compare.add_argument("--names", nargs="+", metavar="NAME", help="a label per run (default: architecture and layer)")
    compare.add_argument("--overwrite", action="store_true")
    compare.set_defaults(handler=run_compare)


def _command_line() -> str:
    return "medseglens " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run(args: argparse.Namespace) -> int:
    from ..interpret import InterpretSettings, ScoringSettings, interpret_sae_run

    settings = InterpretSettings(  # the settings check their own values
        scoring=ScoringSettings(
            bins_per_octave=args.bins_per_octave, shell_mm=args.shell_mm, min_firing_ml=args.min_firing_ml
        ),
        cards_per_category=args.cards,
    )
    result = interpret_sae_run(
        args.model,
        args.sae,
        args.data,
        args.out,
        settings=settings,
        precision=args.precision,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.quiet,
        command=_command_line(),
    )
    n_latents = len(result.records)
    active = sum(result.counts.values())
    summary = ", ".join(f"{c} {n}" for c, n in result.counts.items() if n)
    print(
        f"{active} of {n_latents} latents active on {len(result.table.case_ids)} cases: {summary}; "
        f"{len(result.cards)} cards; gallery: {result.folder / 'gallery.html'}"
    )
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from ..interpret.compare import compare_runs

    out = compare_runs(args.runs, args.out, args.names, args.overwrite, _command_line())
    print(f"wrote {out / 'categories.png'} and {out / 'section.json'}")
    return 0
