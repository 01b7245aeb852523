"""`medseglens demo`: build (once, cached) the demo workspace, then open the viewer on a failure case.

Stage lines on stderr say what runs, what is skipped (done before) and how long
each took; `--no-serve` prints the HTML report's path instead of serving.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ParameterError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="build the demo workspace (cohorts, models, SAEs, analyses, report) and serve the viewer",
        description="Runs the main demo job as cached stages in --work (a rerun skips finished stages, an "
        "interrupted run continues), then serves the browser viewer on a failure case. See docs/demo.md.",
    )
    parser.add_argument(
        "--work",
        metavar="DIR",
        help="work folder, also the viewer's workspace "
        "(default: the cache folder's demo/, or demo-quick/ with --quick)",
    )
    parser.add_argument("--no-serve", action="store_true", help="do not serve; print the HTML report's path")
    parser.add_argument("--host", default="127.0.0.1", help="viewer address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="viewer port (default: 8080; 0 picks a free one)")
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("MEDSEGLENS_THREADS", "2")),
        help="torch threads (default: $MEDSEGLENS_THREADS or 2)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="tiny networks on small 4 mm cohorts: a few minutes, numbers not meaningful",
    )
    size.add_argument(
        "--config", metavar="FILE.json", help="demo settings (any fields of DemoSettings; see docs/demo.md)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..paths import cache_dir
    from ..pipeline import DemoSettings, report_path, run_demo

    if args.threads < 1:
        raise ParameterError(f"--threads {args.threads}: give at least 1")
    if not 0 <= args.port <= 65535:
        raise ParameterError(f"--port {args.port} is not a TCP port (0-65535)")
    torch.set_num_threads(args.threads)
    if args.config:
        config = DemoSettings.from_file(args.config)
    else:
        config = DemoSettings.quick() if args.quick else DemoSettings()
    default = "demo-quick" if args.quick else "demo-custom" if args.config else "demo"
    work = Path(args.work) if args.work else cache_dir() / default
    results = run_demo(config, work)
    report = report_path(work.resolve())
    ran = [r for r in results.values() if r.status == "ran"]
    print(
        f"demo: {len(ran)} stage(s) ran, {len(results) - len(ran)} skipped; "
        f"{sum(r.seconds for r in ran) / 60:.1f} min of work",
        file=sys.stderr,
    )
    if args.no_serve:
        print(f"MedSegLens demo report: {report}")
        return 0
    from .viewer_commands import run as serve

    case = results["latent_maps"].summary.get("failure_case")
    print(f"MedSegLens demo report: {report}", flush=True)
    return serve(
        argparse.Namespace(
            workspace=str(work), host=args.host, port=args.port, allow_remote=False, token=None, case=case
        )
    )
