"""On-disk activation store: safetensors shards plus a JSON manifest.

Folder layout:
    manifest.json               format, d_in, dtype, info, case table, shards, state
    shard-000000.safetensors    activations (rows x d_in, float16|float32) and metadata
                                columns case_index int32, coords int16 (rows x 3),
                                label, tissue, stratum uint8

Writing is crash-safe: cases are buffered, and a flush writes whole cases as new
shard files (each published by rename, so a shard is complete or absent) and then
rewrites the manifest atomically; the manifest is the only commit point. A store
killed mid-way therefore holds committed shards plus, perhaps, orphan shard files
that the manifest does not list: `StoreWriter(..., resume=True)` deletes those and
reports which cases are done, so capture continues with the next case.
Reading streams windows of rows across shards (see `rows.py`), never the whole store.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import CompatibilityError, InputError, IntegrityError, OutputError, ParameterError
from ..fileio import atomic_path, sha256_file, write_json_atomic
from ..pause_points import pause_point
from .rows import seeded_generator, windowed_batches

FORMAT = "medseglens-activation-store"
VERSION = 1
MANIFEST = "manifest.json"
DTYPES = {"float16": torch.float16, "float32": torch.float32}
META_COLUMNS = {
    "case_index": (torch.int32, ()),
    "coords": (torch.int16, (3,)),
    "label": (torch.uint8, ()),
    "tissue": (torch.uint8, ()),
    "stratum": (torch.uint8, ()),
}
NO_CLASS = 255  # label/tissue value for "unknown" (e.g. no ground truth)


def _read_manifest(path: Path) -> dict:
    import json

    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_text())
    except FileNotFoundError:
        raise InputError(
            f"{path}: not an activation store (no {MANIFEST}); point to a folder written by capture"
        ) from None
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{file}: unreadable manifest ({exc}); delete the store and capture again") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise InputError(f"{file}: not a version-{VERSION} MedSegLens activation store manifest")
    return manifest


class StoreWriter:
    """Appends cases of activation rows to a store; `close()` marks it complete."""

    def __init__(
        self,
        path: str | Path,
        d_in: int,
        *,
        dtype: str = "float16",
        shard_rows: int = 65536,
        info: dict[str, Any] | None = None,
        resume: bool = False,
        overwrite: bool = False,
    ):
        if dtype not in DTYPES:
            raise ParameterError(f"store dtype {dtype!r} is unsupported; use float16 or float32")
        self.path = Path(path)
        self.shard_rows = int(shard_rows)
        self._buffer: list[dict[str, torch.Tensor]] = []
        self._buffered_cases: list[dict] = []
        self._buffered_rows = 0
        fresh = {
            "format": FORMAT,
            "version": VERSION,
            "d_in": int(d_in),
            "dtype": dtype,
            "info": info or {},
            "state": "writing",
            "cases": [],
            "shards": [],
        }
        if (self.path / MANIFEST).exists():
            if overwrite:
                self._clear()
                self.manifest = fresh
            elif resume:
                self.manifest = self._resume(fresh)
            else:
                raise OutputError(f"{self.path}: a store already exists; pass --resume to continue it or --overwrite")
        else:
            if self.path.exists() and any(self.path.iterdir()) and not (resume or overwrite):
                raise OutputError(f"{self.path}: folder is not empty; choose a new folder or pass --overwrite")
            self._clear()
            self.manifest = fresh
        self._commit()

    # -- resume -----------------------------------------------------------------------------
    def _resume(self, fresh: dict) -> dict:
        manifest = _read_manifest(self.path)
        for key in ("d_in", "dtype", "info"):
            if manifest[key] != fresh[key]:
                raise CompatibilityError(
                    f"{self.path}: cannot resume, the store was started with {key}={manifest[key]!r} "
                    f"but now {fresh[key]!r}; use the original settings or a new folder"
                )
        if manifest["state"] == "complete":
            raise OutputError(f"{self.path}: store is already complete; use it, or pass --overwrite to recapture")
        listed = {s["file"] for s in manifest["shards"]}
        for file in self.path.iterdir():
            if file.name != MANIFEST and file.name not in listed:
                file.unlink()  # orphan shard or temporary file from the killed run
        for shard in manifest["shards"]:
            file = self.path / shard["file"]
            if not file.exists() or file.stat().st_size != shard["bytes"]:
                raise IntegrityError(f"{file}: shard missing or truncated; delete the store and capture again")
        return manifest

    def _clear(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for file in self.path.iterdir():
            if file.is_file() and (file.name == MANIFEST or file.name.startswith(("shard-", ".shard-", ".manifest"))):
                file.unlink()

    @property
    def done_case_ids(self) -> set[str]:
        """Cases whose rows are all committed (skip these when resuming a capture)."""
        return {c["case_id"] for c in self.manifest["cases"]}

    @property
    def n_rows(self) -> int:
        return sum(s["rows"] for s in self.manifest["shards"])

    # -- writing ----------------------------------------------------------------------------
    def add_case(
        self,
        case_id: str,
        population: str,
        activations: torch.Tensor | np.ndarray,
        coords: torch.Tensor | np.ndarray,
        label: torch.Tensor | np.ndarray | None = None,
        tissue: torch.Tensor | np.ndarray | None = None,
        stratum: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        """Buffer one case's rows (activations n x d_in, coords n x 3 voxel indices in the image)."""
        if case_id in self.done_case_ids or any(c["case_id"] == case_id for c in self._buffered_cases):
            raise ParameterError(f"case {case_id!r} is already in the store {self.path}; each case is added once")
        acts = torch.as_tensor(activations)
        n = acts.shape[0]
        if acts.ndim != 2 or acts.shape[1] != self.manifest["d_in"]:
            raise ParameterError(
                f"case {case_id}: activations have shape {tuple(acts.shape)}, the store {self.path} "
                f"expects (rows, {self.manifest['d_in']})"
            )
        case_index = len(self.manifest["cases"]) + len(self._buffered_cases)
        columns = {
            "activations": acts.to(DTYPES[self.manifest["dtype"]]),
            "case_index": torch.full((n,), case_index, dtype=torch.int32),
            "coords": torch.as_tensor(coords).to(torch.int16).reshape(n, 3),
        }
        for name, values in (("label", label), ("tissue", tissue), ("stratum", stratum)):
            columns[name] = (
                torch.full((n,), NO_CLASS, dtype=torch.uint8)
                if values is None
                else torch.as_tensor(values).to(torch.uint8).reshape(n)
            )
        self._buffer.append(columns)
        self._buffered_cases.append({"case_id": str(case_id), "population": str(population), "rows": int(n)})
        self._buffered_rows += n
        if self._buffered_rows >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        """Write buffered cases as shards, then commit them in the manifest."""
        if not self._buffered_cases:
            return
        joined = {name: torch.cat([b[name] for b in self._buffer]) for name in self._buffer[0]}
        n_parts = max(1, math.ceil(self._buffered_rows / self.shard_rows))
        new_shards = []
        for part in range(n_parts):
            start, stop = part * self.shard_rows, min(self._buffered_rows, (part + 1) * self.shard_rows)
            if start >= stop:
                continue
            name = f"shard-{len(self.manifest['shards']) + len(new_shards):06d}.safetensors"
            tensors = {key: value[start:stop].contiguous() for key, value in joined.items()}
            with atomic_path(self.path / name) as tmp:
                save_file(tensors, str(tmp))
            file = self.path / name
            new_shards.append(
                {"file": name, "rows": stop - start, "bytes": file.stat().st_size, "sha256": sha256_file(file)}
            )
        pause_point("store:before-commit")
        self.manifest["shards"].extend(new_shards)
        self.manifest["cases"].extend(self._buffered_cases)
        self._buffer, self._buffered_cases, self._buffered_rows = [], [], 0
        self._commit()

    def close(self) -> ActivationStore:
        self.flush()
        self.manifest["state"] = "complete"
        self._commit()
        return ActivationStore(self.path)

    def _commit(self) -> None:
        write_json_atomic(self.path / MANIFEST, self.manifest)


class ActivationStore:
    """Read side of a store: a `RowSource` over its activations, plus metadata scans."""

    def __init__(self, path: str | Path, window_rows: int = 262144, allow_incomplete: bool = False):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        if self.manifest["state"] != "complete" and not allow_incomplete:
            raise InputError(f"{self.path}: store is incomplete (capture was interrupted); resume the capture first")
        self.d_in = int(self.manifest["d_in"])
        self.shards = self.manifest["shards"]
        self.shard_sizes = [int(s["rows"]) for s in self.shards]
        self.n_rows = sum(self.shard_sizes)
        self.window_rows = int(window_rows)
        for shard in self.shards:
            file = self.path / shard["file"]
            if not file.exists() or file.stat().st_size != shard["bytes"]:
                raise IntegrityError(f"{file}: shard missing or truncated; capture the store again")

    @property
    def cases(self) -> list[dict]:
        return self.manifest["cases"]

    @property
    def info(self) -> dict:
        return self.manifest["info"]

    def verify(self) -> None:
        """Check every shard's sha256 against the manifest (slow: reads everything)."""
        for shard in self.shards:
            if sha256_file(self.path / shard["file"]) != shard["sha256"]:
                raise IntegrityError(
                    f"{self.path / shard['file']}: checksum mismatch; the shard was modified or damaged"
                )

    def _read(self, shard: int, start: int, stop: int, column: str = "activations") -> torch.Tensor:
        with safe_open(str(self.path / self.shards[shard]["file"]), framework="pt") as handle:
            return handle.get_slice(column)[start:stop]

    def read_shard(self, shard: int) -> dict[str, torch.Tensor]:
        """All columns of one shard."""
        with safe_open(str(self.path / self.shards[shard]["file"]), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}

    # -- RowSource ---------------------------------------------------------------------------
    def _epoch_ranges(self, seed: int, epoch: int, window: int) -> list[tuple[int, int, int]]:
        """(shard, start, stop) pieces that make up window `window` of epoch `epoch`."""
        order = torch.randperm(len(self.shards), generator=seeded_generator(seed, epoch)).tolist()
        lo, hi = window * self.window_rows, min(self.n_rows, (window + 1) * self.window_rows)
        pieces, position = [], 0
        for shard in order:
            size = self.shard_sizes[shard]
            start, stop = max(lo, position), min(hi, position + size)
            if start < stop:
                pieces.append((shard, start - position, stop - position))
            position += size
            if position >= hi:
                break
        return pieces

    def _load_window(self, seed: int) -> Any:
        def load(epoch: int, window: int) -> torch.Tensor:
            data = torch.cat([self._read(*piece).float() for piece in self._epoch_ranges(seed, epoch, window)])
            return data[torch.randperm(data.shape[0], generator=seeded_generator(seed, epoch, window))]

        return load

    def batches(self, batch_size: int, seed: int, start_batch: int = 0) -> Iterator[torch.Tensor]:
        return windowed_batches(self.n_rows, self.window_rows, self._load_window(seed), batch_size, start_batch)

    def scan(self, batch_size: int) -> Iterator[torch.Tensor]:
        for rows, _meta in self.scan_with_metadata(batch_size):
            yield rows

    def scan_with_metadata(self, batch_size: int) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """Every row once, in storage order, with its metadata columns."""
        for shard in range(len(self.shards)):
            columns = self.read_shard(shard)
            acts = columns.pop("activations")
            for start in range(0, acts.shape[0], batch_size):
                yield (
                    acts[start : start + batch_size].float(),
                    {k: v[start : start + batch_size] for k, v in columns.items()},
                )

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """n rows without replacement, read shard by shard (rows spread over the whole store)."""
        n = min(n, self.n_rows)
        chosen = np.sort(np.random.default_rng(seed).choice(self.n_rows, size=n, replace=False))
        bounds = np.cumsum([0] + self.shard_sizes)
        parts = []
        for shard in range(len(self.shards)):
            lo, hi = np.searchsorted(chosen, [bounds[shard], bounds[shard + 1]])
            if hi > lo:
                rows = self._read(shard, 0, self.shard_sizes[shard])
                parts.append(rows[torch.from_numpy(chosen[lo:hi] - bounds[shard])].float())
        return torch.cat(parts)
