"""Running the steering benchmark: one JSON record per case (resumable, shardable), in the protocol's order.

    run_benchmark(Protocol.load("bench/steering_protocol.json"), out)   # builds inputs, evaluates, reports

Calibration cases come first (every candidate of their population); then test
and harm cases interleaved by index across cohorts, so an interrupted run is a
prefix of every cohort. Test cases get every candidate of their population;
harm cases (adult, healthy) each population's calibrated choice of every
method. A record is written atomically when its case is done; a rerun skips it.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ...data import discover_cohorts
from ...fileio import write_json_atomic
from ...metrics.scores import STRUCTURES
from ...models.inference import load_model
from ...preregistration import bind_results, check_committed
from ...sae import load_sae
from ...steering_contract import RegionSpec
from ..region import region_mask
from ..scales import latent_scales_for, sae_sha256
from ..session import SteeringSession
from .bench_candidates import build_candidates, check_budgets, logit_units
from .bench_inputs import build_inputs
from .bench_select import fit_population
from .evaluate import SCORED, outcome
from .protocol import Protocol

LOGIT_UNITS = "logit_units.json"
RUN_LOG = "runs.jsonl"
WAIT_SECONDS = 20


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def log_run(out: Path, entry: dict) -> None:
    with open(Path(out) / RUN_LOG, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


class Benchmark:
    def __init__(self, protocol: Protocol, out: Path, commit: str, log=print):
        self.protocol, self.out, self.log = protocol, Path(out), log
        self.binding = bind_results(protocol, self.out, commit)
        self.inputs = build_inputs(protocol, self.out, log)
        self.model = load_model(self.inputs.model_dir, device="cpu")
        self.sae = load_sae(self.inputs.sae_dir)
        self.sae_sha = sae_sha256(self.inputs.sae_dir)
        self.scales = latent_scales_for(self.inputs.sae_dir, self.sae, self.sae_sha)
        self.region = RegionSpec("tumour-margin", protocol.margin_mm)
        self.cases = {c.name: discover_cohorts([self.inputs.cohorts[c.name]]) for c in protocol.cohorts()}
        self.roles = {c.name: c.role for c in protocol.cohorts()}
        self.populations = protocol.shifted_populations()
        self.check_disjoint()
        self._candidates: dict[str, list] = {}

    # -- cases and their order -------------------------------------------------------------------
    def split_cases(self, role: str) -> list:
        return [c for name, cases in self.cases.items() if self.roles[name] == role for c in cases]

    def check_disjoint(self) -> None:
        check_disjoint_ids(
            {role: [c.case_id for c in self.split_cases(role)] for role in ("train", "calibration", "test", "harm")}
        )

    def ordered(self) -> list[tuple[str, object]]:
        """Calibration first, then test and harm cases interleaved by index across cohorts."""
        work = [("calibration", c) for c in self.split_cases("calibration")]
        later = [(name, cases) for name, cases in self.cases.items() if self.roles[name] in ("test", "harm")]
        depth = max((len(cases) for _, cases in later), default=0)
        for index in range(depth):
            work += [(self.roles[name], cases[index]) for name, cases in later if index < len(cases)]
        return work

    def record_path(self, split: str, case) -> Path:
        return self.out / "records" / split / f"{case.case_id}.json"

    def load(self, split: str, case) -> dict:
        return json.loads(self.record_path(split, case).read_text())

    # -- units and candidates --------------------------------------------------------------------
    def logit_units(self) -> list[float]:
        path = self.out / LOGIT_UNITS
        if path.is_file():
            return json.loads(path.read_text())["units"]
        logits, regions = [], []
        for files in self.split_cases("calibration"):
            prepared = self.model.prepare(files.load())
            z = self.model.logits(prepared)
            predicted = (z[0].argmax(0) != 0).cpu().numpy()
            logits.append(z)
            regions.append(region_mask(self.region, prepared.grid, predicted))
        units = logit_units(logits, regions)
        write_json_atomic(path, {"units": units, "classes": ["background", "NCR", "ED", "ET"], "cases": len(logits)})
        return units

    def candidates(self, population: str) -> list:
        if population not in self._candidates:
            found = build_candidates(
                self.protocol, self.inputs.contrasts, self.scales.typical, self.logit_units(), population
            )
            check_budgets(found, self.protocol)
            self._candidates[population] = found
        return self._candidates[population]

    def write_candidates(self) -> None:
        write_json_atomic(
            self.out / "candidates.json", {p: [c.describe() for c in self.candidates(p)] for p in self.populations}
        )

    # -- evaluation ------------------------------------------------------------------------------
    def session(self, case) -> SteeringSession:
        return SteeringSession(
            self.model, self.sae, case, self.sae.info.layer, scales=self.scales, sae_sha256=self.sae_sha
        )

    def run_candidate(self, session: SteeringSession, mask, candidate) -> dict:
        if candidate.spec is not None:
            result = session.steer(candidate.spec)
            labels, logits = result.prediction.labels, result.logits
        elif candidate.direction is not None:
            direction = torch.tensor(candidate.direction, dtype=torch.float32)[None]
            result = session.steer_directions(direction, [candidate.amount], self.region)
            labels, logits = result.prediction.labels, result.logits
        else:
            logits = session.logits.clone()
            bias = torch.tensor(candidate.bias, dtype=logits.dtype).view(-1, 1, 1, 1)
            logits[0] += bias if mask is None else bias * torch.from_numpy(mask)
            labels = self.model.to_prediction(logits, session.prepared).labels
        return outcome(labels, logits, session.case, mask).to_json()

    def evaluate_case(self, split: str, files, fitted: dict | None) -> dict:
        case = files.load()
        start = time.perf_counter()
        session = self.session(case)
        mask = region_mask(self.region, session.prepared.grid, session.predicted_tumour())
        before = outcome(session.unsteered().labels, session.logits, case, mask).to_json()
        record = {
            "case_id": case.case_id,
            "population": files.population,
            "split": split,
            "before": before,
            "reference_ml": reference_ml(case),
            "fvu": region_fvu(session, self.region),
        }
        if split in ("calibration", "test"):
            record["candidates"] = [
                {**c.describe(), "outcome": self.run_candidate(session, mask, c)}
                for c in self.candidates(files.population)
            ]
        else:
            applied = []
            for population in self.populations:
                by_key = {c.key: c for c in self.candidates(population)}
                for method, key in fitted[population]["calibrated"].items():
                    if key != "none":
                        applied.append(
                            {
                                "for_population": population,
                                "method": method,
                                "key": key,
                                "outcome": self.run_candidate(session, mask, by_key[key]),
                            }
                        )
            record["applied"] = applied
        record["seconds"] = time.perf_counter() - start
        return record

    def fitted(self) -> dict:
        calibration = self.split_cases("calibration")
        return {
            p: fit_population([self.load("calibration", c) for c in calibration if c.population == p], self.protocol)
            for p in self.populations
        }

    def run(self, shard=(0, 1), limit_seconds: float | None = None, wait: bool = True) -> int:
        """Evaluate this shard's missing cases in order; returns how many were done in this call."""
        index, count = shard
        deadline = None if limit_seconds is None else time.monotonic() + limit_seconds
        self.write_candidates()
        work = [item for position, item in enumerate(self.ordered()) if position % count == index]
        done, fitted = 0, None
        calibration = self.split_cases("calibration")
        for split, files in work:
            if deadline is not None and time.monotonic() > deadline:
                break
            if self.record_path(split, files).exists():
                continue
            if split == "harm" and fitted is None:
                if wait:
                    while not all(self.record_path("calibration", c).exists() for c in calibration):
                        time.sleep(WAIT_SECONDS)
                elif not all(self.record_path("calibration", c).exists() for c in calibration):
                    continue
                fitted = self.fitted()
            record = self.evaluate_case(split, files, fitted)
            write_json_atomic(self.record_path(split, files), record)
            done += 1
            self.log(
                f"{split} {files.case_id}: score {score(record['before'], self.protocol):.3f}, "
                f"{record['seconds']:.1f} s"
            )
        return done


def check_disjoint_ids(ids_by_role: dict[str, list[str]]) -> None:
    """Refuses case ids that appear in two roles (calibration and test, above all)."""
    from ...errors import InputError

    roles = list(ids_by_role)
    for i, first in enumerate(roles):
        for second in roles[i + 1 :]:
            shared = sorted(set(ids_by_role[first]) & set(ids_by_role[second]))
            if shared:
                raise InputError(
                    f"case ids in both {first} and {second}: {', '.join(shared[:5])}"
                    f"{' ...' if len(shared) > 5 else ''}; calibration and test cases must be disjoint"
                )


def score(out: dict, protocol: Protocol) -> float:
    """min Dice over the failure regions (the case fails when it is below the threshold)."""
    return min(out["dice"][r] for r in protocol.regions)


def reference_ml(case) -> dict[str, float] | None:
    if case.label is None:
        return None
    voxel_ml = float(np.prod(case.grid.spacing)) / 1000.0
    return {name: float(np.isin(case.label, STRUCTURES[name]).sum() * voxel_ml) for name in SCORED}


@torch.no_grad()
def region_fvu(session: SteeringSession, region: RegionSpec) -> float | None:
    """Fraction of variance the SAE leaves unexplained on the layer voxels inside the steering region."""
    error = total = 0.0
    rows_seen = []
    for batch, gate in zip(session.batches, session.gates(region)):
        h = batch.h.movedim(1, -1).reshape(-1, batch.h.shape[1])
        inside = torch.ones(len(h), dtype=torch.bool) if gate is None else gate.reshape(-1) > 0
        if bool(inside.any()):
            rows_seen.append(h[inside].float())
    if not rows_seen:
        return None
    rows = torch.cat(rows_seen)
    recon = session.sae(rows)
    error = float(((rows - recon) ** 2).sum())
    total = float(((rows - rows.mean(0)) ** 2).sum())
    return error / total if total > 0 else None


def code_version() -> str:
    """The commit of the code that runs (git HEAD of this checkout, or $MEDSEGLENS_CODE_COMMIT for a snapshot)."""
    import os
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("MEDSEGLENS_CODE_COMMIT", "unknown")


def run_benchmark(
    protocol: Protocol,
    out: str | Path,
    shard=(0, 1),
    limit_seconds: float | None = None,
    commit: str | None = None,
    log=print,
    wait: bool = True,
) -> Path:
    """Check the protocol is committed, bind the folder to it, evaluate, and write the tables."""
    from .bench_report import write_tables

    commit = commit if commit is not None else check_committed(protocol)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entry = {
        "start": _now(),
        "argv": sys.argv,
        "protocol": protocol.name,
        "sha256": protocol.sha256,
        "commit": commit,
        "code": code_version(),
        "shard": list(shard),
        "host": platform.node(),
        "threads": torch.get_num_threads(),
    }
    log_run(out, {**entry, "event": "start"})
    with torch.no_grad():  # not set globally: callers (tests) may train afterwards
        bench = Benchmark(protocol, out, commit, log)
        done = bench.run(shard, limit_seconds, wait)
        tables = write_tables(bench)
    log_run(out, {**entry, "event": "end", "end": _now(), "cases_done_now": done, "tables": str(tables)})
    return tables
