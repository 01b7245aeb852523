"""Rank programs that the distributed tests start with a real torchrun (gloo, loopback).

    torchrun --nproc-per-node 2 ... Testing/distributed_jobs.py train OUT_DIR --kinds batchtopk,topk \
        [--kill-rank R --kill-step S]
    torchrun --nproc-per-node 2 ... Testing/distributed_jobs.py extract MODEL COHORT STORE LOG_DIR \
        [--kill-rank R --kill-step N]

`train` trains on `planted_training_rows()` with `training_config()` (the tests run
the same in one process to compare) and rank 0 saves each kind's exported weights
as OUT_DIR/KIND.safetensors; every rank writes OUT_DIR/KIND-rankR.json (steps,
dead fraction) so the tests see that all ranks finished.
`extract` captures the cohort with `extraction_settings()` and logs each rank's
progress calls (case id, skipped) to LOG_DIR/extract-rankR.jsonl.

With --kill-rank, that rank SIGKILLs itself right after training step S (or after
committing its N-th case), as a node failure would end it; torchrun then stops the
job and a rerun must resume.
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
from MedSegLensLib.sae import SAETrainingSettings, TensorRows  # noqa: E402
from MedSegLensLib.sae.synthetic import planted_rows  # noqa: E402


def planted_training_rows() -> torch.Tensor:
    return planted_rows(12_000, 16, 40, 3, spread=0.5)[0]


def training_config(kind: str, checkpoint_every: int = 0) -> SAETrainingSettings:
    # dead_after_rows is small so latents die and AuxK (over dead latents of all ranks) takes part.
    return SAETrainingSettings(
        n_latents=96,
        k=3,
        kind=kind,
        total_rows=72_000,
        batch_size=800,
        dead_after_rows=4_000,
        init_rows=4_000,
        seed=11,
        checkpoint_every=checkpoint_every,
    )


LAYER = "model.1.submodule.0"  # tiny U-Net encoder block: 8 channels at stride 4


def extraction_settings() -> dict:
    """Small quotas (tiny cases) and a fixed sampling seed."""
    quotas = {"background": 8, "brain": 8, "CSF": 8, "GM": 8, "WM": 8, "NCR": 16, "ED": 16, "ET": 16}
    return {"quotas": quotas, "seed": 3}


def extract(args: argparse.Namespace) -> None:
    from MedSegLensLib.data import discover_cohorts
    from MedSegLensLib.distributed.extraction import extract_activations_distributed
    from MedSegLensLib.models import load_model

    model = load_model(args.model, device="cpu")
    with joined() as group:
        log = Path(args.log) / f"extract-rank{group.rank}.jsonl"

        def record(done: int, total: int, case_id: str, skipped: bool) -> None:
            with log.open("a") as handle:
                handle.write(json.dumps({"case_id": case_id, "skipped": skipped}) + "\n")
            if group.rank == args.kill_rank and done == args.kill_step and not skipped:
                os.kill(os.getpid(), signal.SIGKILL)

        extract_activations_distributed(
            model,
            LAYER,
            discover_cohorts([args.cohort]),
            args.store,
            group,
            progress=record,
            resume=args.resume,
            **extraction_settings(),
        )


def train(args: argparse.Namespace) -> None:
    with joined() as group:

        def maybe_die(info) -> None:
            if group.rank == args.kill_rank and info.step == args.kill_step:
                os.kill(os.getpid(), signal.SIGKILL)

        for kind in args.kinds.split(","):
            checkpoint = Path(args.checkpoint) / kind if args.checkpoint else None
            sae, summary = train_sae_distributed(
                TensorRows(planted_training_rows()),
                training_config(kind, args.checkpoint_every),
                group,
                checkpoint_dir=checkpoint,
                progress=maybe_die,
                show_progress=False,
            )
            facts = {
                "world_size": group.world_size,
                "steps": summary["steps"],
                "dead_fraction": summary["dead_fraction"],
            }
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
    job = sub.add_parser("extract")
    for name in ("model", "cohort", "store", "log"):
        job.add_argument(name)
    job.add_argument("--resume", action="store_true")
    job.add_argument("--kill-rank", type=int, default=-1)
    job.add_argument("--kill-step", type=int, default=-1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"train": train, "extract": extract}[args.job](args)


if __name__ == "__main__":
    main()
