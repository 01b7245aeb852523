"""Running the recovery study: candidate tables per case (resumable, shardable), off-target checks, the report.

    run_recovery_study("models/unet", ["saes/decoder1"], ["cohorts/ssa_test", ...], "study/",
                       calibration=["cohorts/ssa_calib", ...])

Work is one JSON record per case under `out/cases/`; a crashed or sharded run
continues where it stopped. `shard=(i, n)` evaluates every n-th case starting
at i (run n processes, then once more without a shard to finish and report).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ...data import CaseFiles, discover_cohorts
from ...errors import CompatibilityError, InputError, OutputError, ParameterError
from ...fileio import write_json_atomic
from ...metrics.scores import STRUCTURES
from ...models.inference import load_model
from ...sae import load_sae
from ...sae.extract import complete_store
from ...steering_contract import RegionSpec
from ..scales import latent_scales_for, sae_sha256
from ..session import SteeringSession
from .candidates import (
    Candidate,
    LatentUsage,
    direction_candidates,
    latent_usage,
    logit_bias_candidates,
    population_specific,
    random_latents,
    sae_candidates,
    shared_latents,
)
from .evaluate import SCORED, CaseEvaluator
from .report import write_report
from .selection import calibrated_key, volume_target
from .settings import HEALTHY_POPULATION, REFERENCE_POPULATION, StudySettings

WAIT_SECONDS = 15


@dataclass
class StudySAE:
    folder: Path
    sae: object
    sha256: str
    scales: object
    usage: LatentUsage
    name: str


def _load_saes(folders, model) -> list[StudySAE]:
    out = []
    for folder in folders:
        folder = Path(folder)
        sae = load_sae(folder)
        if sae.info.model_fingerprint != model.fingerprint:
            raise CompatibilityError(
                f"{folder}: SAE belongs to model {sae.info.model_fingerprint[:12]}, not "
                f"{model.fingerprint[:12]}; pass SAEs trained on this model"
            )
        sha = sae_sha256(folder)
        scales = latent_scales_for(folder, sae, sha)
        store_path = ((sae.info.training or {}).get("data") or {}).get("store")
        store = complete_store(store_path) if store_path else None
        if scales is None or store is None:
            raise InputError(
                f"{folder}: the study needs the SAE's activation store (recorded in sae.json) for "
                "typical activations and population contrasts; train it with `medseglens sae train`"
            )
        out.append(StudySAE(folder, sae, sha, scales, latent_usage(sae, store), folder.name))
    return out


def _split(data: list[CaseFiles], calibration: list[CaseFiles] | None, settings: StudySettings):
    """(calibration cases, test cases) per shifted population, and the adult/healthy off-target cases."""

    def shifted(cases):
        return [c for c in cases if c.population not in (REFERENCE_POPULATION, HEALTHY_POPULATION)]

    test, calib = shifted(data), []
    if calibration is not None:
        calib = shifted(calibration)
    else:
        rng = np.random.default_rng(settings.seed)
        chosen = {c.case_id for c in test if rng.random() < settings.calibration_fraction}
        calib, test = [c for c in test if c.case_id in chosen], [c for c in test if c.case_id not in chosen]
    calib = _first_per_population(sorted(calib, key=lambda c: c.case_id), settings.calibration_cases)
    test = sorted(test, key=lambda c: (c.population, c.case_id))
    if settings.test_cases:
        test = _first_per_population(test, settings.test_cases)
    offtarget = [c for c in data if c.population in (REFERENCE_POPULATION, HEALTHY_POPULATION)]
    return calib, test, offtarget


def _first_per_population(cases: list[CaseFiles], count: int) -> list[CaseFiles]:
    """The first `count` cases of each population, in the given order."""
    seen: dict[str, int] = {}
    kept = []
    for case in cases:
        seen[case.population] = seen.get(case.population, 0) + 1
        if seen[case.population] <= count:
            kept.append(case)
    return kept


class RecoveryStudy:
    def __init__(self, model_dir, sae_dirs, data, out, settings: StudySettings, calibration=None, overwrite=False):
        self.settings = settings
        self.out = Path(out)
        self.model = load_model(model_dir)
        self.saes = _load_saes(sae_dirs, self.model)
        cases = discover_cohorts([str(d) for d in data])
        calib_cases = discover_cohorts([str(d) for d in calibration]) if calibration else None
        self.calibration, self.test, self.offtarget = _split(cases, calib_cases, settings)
        populations = sorted({c.population for c in self.test})
        if not populations:
            raise InputError("no cases of a shifted population (other than adult and healthy) in --data")
        missing = [p for p in populations if not any(c.population == p for c in self.calibration)]
        if missing:
            raise InputError(f"no calibration cases for {', '.join(missing)}; pass --calibration cohorts of them")
        for study_sae in self.saes:
            absent = [p for p in [REFERENCE_POPULATION, *populations] if p not in study_sae.usage.frequency]
            if absent:
                raise InputError(
                    f"{study_sae.folder}: its activation store has no {', '.join(absent)} cases, so "
                    "population contrasts cannot be measured; train the SAE on pooled populations"
                )
        self.populations = populations
        self.region = RegionSpec("tumour-margin", settings.margin_mm)
        self.candidates = {p: self._candidates(p) for p in populations}
        self._prepare_folder(model_dir, sae_dirs, overwrite)

    # -- setup -----------------------------------------------------------------------------------
    def _prepare_folder(self, model_dir, sae_dirs, overwrite: bool) -> None:
        record = {
            "settings": self.settings.to_json(),
            "model": str(model_dir),
            "model_sha256": self.model.fingerprint,
            "saes": [{"folder": str(s.folder), "sha256": s.sha256, "layer": s.sae.info.layer} for s in self.saes],
        }
        record = json.loads(json.dumps(record))  # as it reads back (tuples become lists)
        path = self.out / "study.json"
        if path.exists() and not overwrite:
            previous = json.loads(path.read_text())
            if {k: previous.get(k) for k in record} != record:
                raise OutputError(
                    f"{path}: a study with other settings, model or SAEs is here; pass --overwrite or "
                    "choose another --out"
                )
        elif path.exists() and overwrite:
            for old in (self.out / "cases").rglob("*.json"):
                old.unlink()
        record["candidates"] = {p: [c.to_json() for c in cs] for p, cs in self.candidates.items()}
        record["latent_groups"] = {p: self._dose_groups(p) for p in self.populations}
        write_json_atomic(path, record)

    def _candidates(self, population: str) -> list[Candidate]:
        s = self.settings
        out: list[Candidate] = []
        units = []
        for index, study_sae in enumerate(self.saes):
            chosen = population_specific(
                study_sae.usage, population, study_sae.scales.typical, s.latents_per_population, s.min_firing
            )
            if len(chosen) < s.latents_per_population:
                raise ParameterError(
                    f"{study_sae.folder}: only {len(chosen)} latents fire on tumour rows of adult or "
                    f"{population} cases; lower latents_per_population or min_firing"
                )
            out += sae_candidates(f"sae:{study_sae.name}", index, chosen, s.alphas, self.region)
            units.append(float(torch.median(study_sae.scales.typical[[latent for latent, _ in chosen]])))
        first = self.saes[0]
        out += direction_candidates(first.usage, population, units[0], s, seed=s.seed + _stable(population))
        out += logit_bias_candidates(s, classes=len(self.model.config.labels))
        return out

    def _dose_groups(self, population: str) -> dict[str, list[tuple[int, int]]]:
        s, first = self.settings, self.saes[0]
        typical = first.scales.typical
        specific = population_specific(first.usage, population, typical, s.dose_latents, s.min_firing)
        shared = shared_latents(first.usage, population, typical, s.dose_latents)
        exclude = {latent for latent, _ in specific} | set(shared)
        random = random_latents(typical, exclude, s.dose_latents, s.seed + _stable(population))
        return {"population-specific": specific, "shared": [(i, 1) for i in shared], "random": [(i, 1) for i in random]}

    # -- work ------------------------------------------------------------------------------------
    def record_path(self, split: str, case: CaseFiles) -> Path:
        return self.out / "cases" / split / case.population / f"{case.case_id}.json"

    def _sessions(self, case) -> list[SteeringSession]:
        return [
            SteeringSession(self.model, s.sae, case, s.sae.info.layer, scales=s.scales, sae_sha256=s.sha256)
            for s in self.saes
        ]

    def _mine(self, items, shard):
        index, count = shard
        return [item for position, item in enumerate(items) if position % count == index]

    def evaluate_tables(self, shard=(0, 1)) -> None:
        """Phase 1: every candidate on every calibration and test case of this shard."""
        work = [("calibration", c) for c in self.calibration] + [("test", c) for c in self.test]
        dose_pool = {
            p: {c.case_id for c in [t for t in self.test if t.population == p][: 2 * self.settings.dose_cases]}
            for p in self.populations
        }
        todo = [(split, c) for split, c in self._mine(work, shard) if not self.record_path(split, c).exists()]
        for split, files in tqdm(todo, desc="steering study", unit="case", file=sys.stderr, dynamic_ncols=True):
            case = files.load()
            start = time.perf_counter()
            evaluator = CaseEvaluator(self._sessions(case), self.region)
            region = self.settings.failure_region(case.population)
            before = evaluator.unsteered()
            record = {
                "case_id": case.case_id,
                "population": case.population,
                "split": split,
                "failure_region": region,
                "before": before.to_json(),
                "reference_ml": _reference_ml(case),
                "candidates": [
                    {**c.to_json(), "outcome": evaluator.run(c).to_json()} for c in self.candidates[case.population]
                ],
            }
            failed = min(before.dice[r] for r in ("WT", "TC", "ET")) < self.settings.failure_dice
            if split == "test" and failed and case.case_id in dose_pool[case.population]:
                groups = {g: [tuple(x) for x in v] for g, v in self._dose_groups(case.population).items()}
                record["dose"] = evaluator.dose(groups, self.settings.dose_alphas)
            record["seconds"] = time.perf_counter() - start
            write_json_atomic(self.record_path(split, files), record)

    def fitted(self) -> dict[str, dict]:
        """Per population: the calibrated key of every method and the volume-ratio target."""
        out = {}
        for population in self.populations:
            records = [self.load("calibration", c) for c in self.calibration if c.population == population]
            region = self.settings.failure_region(population)
            methods = sorted({c.method for c in self.candidates[population]}, key=_method_order)
            out[population] = {
                "calibrated": {m: calibrated_key(records, m, region) for m in methods},
                "volume_target": volume_target(records, region),
                "calibration_cases": len(records),
            }
        return out

    def evaluate_offtarget(self, fitted: dict, shard=(0, 1)) -> None:
        """Phase 2: each population's calibrated interventions applied to adult and healthy cases."""
        todo = [c for c in self._mine(self.offtarget, shard) if not self.record_path("offtarget", c).exists()]
        for files in tqdm(todo, desc="off-target cases", unit="case", file=sys.stderr, dynamic_ncols=True):
            case = files.load()
            evaluator = CaseEvaluator(self._sessions(case), self.region)
            applied = []
            for population, fit in fitted.items():
                by_key = {(c.method, c.key): c for c in self.candidates[population]}
                for method, key in fit["calibrated"].items():
                    if key == "none":
                        continue
                    applied.append(
                        {
                            "for_population": population,
                            "method": method,
                            "key": key,
                            "outcome": evaluator.run(by_key[(method, key)]).to_json(),
                        }
                    )
            record = {
                "case_id": case.case_id,
                "population": case.population,
                "split": "offtarget",
                "before": evaluator.unsteered().to_json(),
                "reference_ml": _reference_ml(case),
                "applied": applied,
            }
            write_json_atomic(self.record_path("offtarget", files), record)

    def load(self, split: str, case: CaseFiles) -> dict:
        return json.loads(self.record_path(split, case).read_text())

    def wait_for(self, split: str, cases: list[CaseFiles]) -> None:
        while not all(self.record_path(split, c).exists() for c in cases):
            time.sleep(WAIT_SECONDS)


def _reference_ml(case) -> dict[str, float] | None:
    if case.label is None:
        return None
    voxel_ml = float(np.prod(case.grid.spacing)) / 1000.0
    return {name: float(np.isin(case.label, STRUCTURES[name]).sum() * voxel_ml) for name in SCORED}


def _stable(text: str) -> int:
    return sum((i + 1) * ord(ch) for i, ch in enumerate(text))


def _method_order(method: str) -> tuple[int, str]:
    return (0 if method.startswith("sae:") else {"mean-diff": 1, "random": 2, "logit-bias": 3}.get(method, 4), method)


@torch.no_grad()  # a context, not a global switch: a caller (a test, a notebook) may train afterwards
def run_recovery_study(
    model_dir,
    sae_dirs,
    data,
    out,
    settings: StudySettings | None = None,
    calibration=None,
    overwrite: bool = False,
    shard=(0, 1),
) -> Path | None:
    """Run (or continue) the study; returns the report section path once every case is done, else None."""
    settings = settings or StudySettings()
    study = RecoveryStudy(model_dir, sae_dirs, data, out, settings, calibration, overwrite)
    study.evaluate_tables(shard)
    study.wait_for("calibration", study.calibration)
    fitted = study.fitted()
    study.evaluate_offtarget(fitted, shard)
    if shard[1] > 1 and not all(study.record_path("test", c).exists() for c in study.test):
        return None
    study.wait_for("test", study.test)
    study.wait_for("offtarget", study.offtarget)
    records = {
        split: [study.load(split, c) for c in cases]
        for split, cases in (("calibration", study.calibration), ("test", study.test), ("offtarget", study.offtarget))
    }
    return write_report(study.out, records, fitted, settings, json.loads((study.out / "study.json").read_text()))
