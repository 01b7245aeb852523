"""Cached stages: content keys, atomic done-markers, resume after an interruption.

A stage's key hashes the config fields it uses and the run ids of the stages it
depends on. `.stages/<name>.done.json` (written atomically when the stage
finishes) holds that key and a fresh run id, so:

- a rerun skips every stage whose marker matches its key;
- a stage that reran gives its dependents a new key, so they rerun too;
- deleting a marker reruns that stage (its declared outputs are cleared first)
  and then its dependents;
- an interrupted stage leaves `.stages/<name>.started.json` with its key; the
  next run continues it (`StageContext.resume`) instead of starting over, so
  long steps resume from their own checkpoints; the time already spent (when
  the stage stopped on an exception or Ctrl-C) counts in its recorded seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParameterError
from ..fileio import write_json_atomic
from .settings import DemoSettings

MARKERS = ".stages"
RUN_RECORD = "run.json"
PIPELINE_VERSION = 1


@dataclass(frozen=True)
class Stage:
    """A step of the job: what it needs (stages, config fields), what it writes, and the work itself."""

    name: str
    title: str
    run: Callable[[StageContext], dict]
    deps: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # paths relative to the work folder, cleared before a fresh run


@dataclass
class StageContext:
    work: Path
    config: DemoSettings
    resume: bool

    def path(self, *parts: str) -> Path:
        return self.work.joinpath(*parts)


@dataclass
class StageResult:
    name: str
    status: str  # "ran" or "skipped"
    seconds: float
    built_seconds: float
    key: str
    summary: dict = field(default_factory=dict)


def _marker(work: Path, name: str, kind: str) -> Path:
    return work / MARKERS / f"{name}.{kind}.json"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stage_key(stage: Stage, config: DemoSettings, dep_run_ids: dict[str, str]) -> str:
    blob = {
        "version": PIPELINE_VERSION,
        "stage": stage.name,
        "deps": dep_run_ids,
        "config": {name: config.field_json(name) for name in stage.uses},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def check_graph(stages: list[Stage]) -> None:
    """Names unique, dependencies listed before their dependents."""
    seen: set[str] = set()
    for stage in stages:
        unknown = [d for d in stage.deps if d not in seen]
        if stage.name in seen or unknown:
            raise ParameterError(f"stage {stage.name}: duplicate name or dependencies {unknown} not defined before it")
        seen.add(stage.name)


def _clear(work: Path, outputs: tuple[str, ...]) -> None:
    for relative in outputs:
        path = work / relative
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_stages(stages: list[Stage], config: DemoSettings, work: str | os.PathLike, log=None) -> list[StageResult]:
    """Run what is not done yet, in order; write `run.json` (per-stage wall times) after every stage."""
    check_graph(stages)
    work = Path(work)
    (work / MARKERS).mkdir(parents=True, exist_ok=True)
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    run_ids: dict[str, str] = {}
    context = StageContext(work, config, resume=False)
    results: list[StageResult] = []
    record = {
        "pipeline_version": PIPELINE_VERSION,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "threads": _threads(),
        "stages": {},
    }
    started = time.perf_counter()
    for number, stage in enumerate(stages, start=1):
        key = stage_key(stage, config, {d: run_ids[d] for d in stage.deps})
        done = _read(_marker(work, stage.name, "done"))
        prefix = f"demo [{number}/{len(stages)}] {stage.name}"
        load_before = _load()
        if done and done.get("key") == key:
            run_ids[stage.name] = done["run_id"]
            results.append(
                StageResult(stage.name, "skipped", 0.0, done.get("seconds", 0.0), key, done.get("summary", {}))
            )
            log(f"{prefix}: done before ({done.get('seconds', 0):.1f} s), skipped")
        else:
            started_marker = _marker(work, stage.name, "started")
            interrupted = _read(started_marker) or {}
            resume = interrupted.get("key") == key
            earlier = float(interrupted.get("seconds_before", 0.0)) if resume else 0.0
            _marker(work, stage.name, "done").unlink(missing_ok=True)
            if not resume:
                _clear(work, stage.outputs)
                write_json_atomic(started_marker, {"key": key})
            log(f"{prefix}: {'resuming' if resume else 'running'} ({stage.title})")
            context.resume = resume
            begin = time.perf_counter()
            try:
                summary = stage.run(context) or {}
            except BaseException:  # interrupted or failed: keep the time spent for the resumed run's total
                write_json_atomic(started_marker, {"key": key, "seconds_before": earlier + time.perf_counter() - begin})
                raise
            seconds = round(earlier + time.perf_counter() - begin, 1)
            run_ids[stage.name] = uuid.uuid4().hex
            write_json_atomic(
                _marker(work, stage.name, "done"),
                {
                    "key": key,
                    "run_id": run_ids[stage.name],
                    "seconds": seconds,
                    "summary": summary,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
            )
            started_marker.unlink(missing_ok=True)
            results.append(StageResult(stage.name, "ran", seconds, seconds, key, summary))
            log(f"{prefix}: finished in {seconds:.1f} s")
        last = results[-1]
        record["stages"][stage.name] = {
            "title": stage.title,
            "status": last.status,
            "seconds": last.seconds,
            "built_seconds": last.built_seconds,
            "load_before": load_before,
            "load_after": _load(),
        }
        record["total_seconds"] = round(time.perf_counter() - started, 1)
        write_json_atomic(work / RUN_RECORD, record)
    return results


def _threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a core dependency
        return None
