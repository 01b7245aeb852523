"""Rank programs that the distributed tests start with a real torchrun (gloo, loopback).

    torchrun --nproc-per-node 2 ... Testing/distributed_jobs.py train OUT_DIR --kinds batchtopk,topk [--kill-rank R --kill-step S]

`train` trains on `planted_training_rows()` with `training_config()` (the tests run
the same in one process to compare) and rank 0 saves each kind's exported weights
as OUT_DIR/KIND.safetensors; every rank writes OUT_DIR/KIND-rankR.json (steps,
dead fraction) so the tests see that all ranks finished.
With --kill-rank, that rank SIGKILLs itself right after step S, as a node failure
would end it; torchrun then stops the job and a rerun must resume.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from MedSegLensLib.distributed import joined, train_sae_distributed  # noqa: E402
from MedSegLensLib.sae import TensorRows, TrainConfig  # noqa: E402
from MedSegLensLib.sae.synthetic import planted_rows  # noqa: E402


def planted_training_rows() -> torch.Tensor:
    return planted_rows(12_000, 16, 40, 3, spread=0.5)[0]


def training_config(kind: str, checkpoint_every: int = 0) -> TrainConfig:
    # dead_after_rows is small so latents die and AuxK (over dead latents of all ranks) takes part.
    return TrainConfig(n_latents=96, k=3, kind=kind, total_rows=72_000, batch_size=800, dead_after_rows=4_000,
                       init_rows=4_000, seed=11, checkpoint_every=checkpoint_every)


def train(args: argparse.Namespace) -> None:
    with joined() as group:
        def maybe_die(info) -> None:
            if group.rank == args.kill_rank and info.step == args.kill_step:
                os.kill(os.getpid(), signal.SIGKILL)

        for kind in args.kinds.split(","):
            checkpoint = Path(args.checkpoint) / kind if args.checkpoint else None
            sae, summary = train_sae_distributed(
                TensorRows(planted_training_rows()), training_config(kind, args.checkpoint_every), group,
                checkpoint_dir=checkpoint, progress=maybe_die, show_progress=False)
            facts = {"world_size": group.world_size, "steps": summary["steps"], "dead_fraction": summary["dead_fraction"]}
            (Path(args.out) / f"{kind}-rank{group.rank}.json").write_text(json.dumps(facts))
            if group.rank == 0:
                save_file(sae.state_dict(), str(Path(args.out) / f"{kind}.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="job", required=True)
    job = sub.add_parser("train")
    job.add_argument("out")
    job.add_argument("--kinds", default="batchtopk")
    job.add_argument("--checkpoint")
    job.add_argument("--checkpoint-every", type=int, default=0)
    job.add_argument("--kill-rank", type=int, default=-1)
    job.add_argument("--kill-step", type=int, default=-1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train(args)


if __name__ == "__main__":
    main()
