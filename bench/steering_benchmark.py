"""The pre-registered steering benchmark (issue 16): SAE steering against fair baselines on fresh cases.

    python bench/steering_benchmark.py                         # the full protocol; resumable
    python bench/steering_benchmark.py --shard 0/2 & python bench/steering_benchmark.py --shard 1/2
    python bench/steering_benchmark.py --report                # only rewrite the tables from the records
    python bench/steering_benchmark.py --small --out /tmp/b    # tiny sizes (tests); numbers mean nothing

Everything follows `bench/steering_protocol.json` (cohorts with fresh seeds, the U-Net and SAE recipes, the
candidate grid, the selection rules, the primary comparison). The command refuses a protocol with uncommitted
changes, and a results folder written for another protocol (its sha256 and commit are stored in
`OUT/protocol.json`). Every invocation is logged in `OUT/runs.jsonl`; each case's record is kept under
`OUT/records/`, so a rerun continues. The tables (`OUT/results/table.md`, `summary.json`, `per_case.csv`) are
recomputed from the records at the end of every run; a partial run says so in the table's first line.
Default OUT: `$MEDSEGLENS_CACHE/steering-benchmark/<protocol name>` (`~/.cache/medseglens/...`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from MedSegLensLib.errors import MedSegLensError
from MedSegLensLib.paths import cache_dir
from MedSegLensLib.preregistration import check_committed
from MedSegLensLib.steering.study.bench_report import write_tables
from MedSegLensLib.steering.study.bench_run import Benchmark, run_benchmark
from MedSegLensLib.steering.study.protocol import Protocol

DEFAULT_PROTOCOL = Path(__file__).resolve().parent / "steering_protocol.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", type=Path, default=DEFAULT_PROTOCOL)
    parser.add_argument("--out", type=Path, help="results folder (default: the cache's steering-benchmark/NAME)")
    parser.add_argument("--small", action="store_true", help="tiny sizes of the same protocol (tests)")
    parser.add_argument("--shard", default="0/1", help="I/N: evaluate every N-th case from the I-th")
    parser.add_argument("--limit-minutes", type=float, help="stop starting new cases after this long")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--report", action="store_true", help="only rewrite the tables from existing records")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    protocol = Protocol.load(args.protocol, small=args.small)
    out = args.out or cache_dir() / "steering-benchmark" / protocol.name
    index, count = (int(x) for x in args.shard.split("/"))
    if args.report:
        commit = check_committed(protocol)
        print(write_tables(Benchmark(protocol, out, commit)))
        return 0
    limit = None if args.limit_minutes is None else 60 * args.limit_minutes
    tables = run_benchmark(
        protocol, out, (index, count), limit, log=lambda line: print(line, file=sys.stderr, flush=True)
    )
    print(tables)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MedSegLensError as error:
        print(f"steering_benchmark: error: {error}", file=sys.stderr)
        sys.exit(2)
