"""`medseglens serve`: the browser viewer for a workspace (loopback by default, always behind a token)."""

from __future__ import annotations

import argparse
import os
import sys

TOKEN_ENV = "MEDSEGLENS_VIEWER_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the browser viewer for a workspace",
        description="Serve the browser viewer. It listens on 127.0.0.1 unless --allow-remote and a token are given; "
        "the printed address carries the access token.",
    )
    parser.add_argument("--workspace", required=True, help="workspace folder (workspace.json and/or cohorts/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (needs --token)")
    parser.add_argument(
        "--token", default=None, help=f"access token (default: ${TOKEN_ENV}, else a random one on loopback)"
    )
    parser.add_argument("--case", default=None, help="case to open first (default: the first failure case)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ParameterError
    from ..viewer.server import serve

    if not 0 <= args.port <= 65535:
        raise ParameterError(f"--port {args.port} is not a TCP port (0-65535)")
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None

    def announce(url: str) -> None:
        print(f"MedSegLens viewer: {url}", flush=True)

    serve(
        args.workspace,
        host=args.host,
        port=args.port,
        token=token,
        allow_remote=args.allow_remote,
        case_id=args.case,
        announce=announce,
    )
    print("MedSegLens viewer stopped", file=sys.stderr)
    return 0
