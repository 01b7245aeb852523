"""Activation extraction sharded by case across ranks, merged into one ordinary store.

Rank r of N takes cases r, r+N, r+2N, ... (round robin keeps the ranks' loads even
when a cohort is sorted by population or size) and writes them as its own store
under `STORE/parts/rank-RRRRR-of-NNNNN/`, with the single-process writer, so a
killed rank loses at most its unflushed cases. After all parts are complete (a
barrier), every rank republishes its own shards at the store's top level with the
case index renumbered to the order of the input case list and the shards ordered by
the first case they hold; rank 0 then writes the merged manifest atomically (the
only commit point) and removes the parts. The result is a single-process capture's
store: the same case table in the same order and the same rows per case. As
`sae.extract` commits each case as its own shard, shard i is case i and the merged
store equals the single-process one file for file (same sha256s).

A rerun with `resume` skips complete parts and, inside an unfinished part, the cases
it already committed; it needs the same number of ranks (the case assignment
depends on it). Every rank must see the store folder (a shared file system).
"""

from __future__ import annotations

import bisect
import itertools
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from ..errors import CompatibilityError, IntegrityError, OutputError, ParameterError
from ..fileio import atomic_path, sha256_file, write_json_atomic
from ..sae.store import MANIFEST, ActivationStore
from .group import RankGroup, agree

if TYPE_CHECKING:  # the backbone stack (MONAI) loads only when extraction runs
    from ..data import CaseFiles
    from ..models.inference import SegmentationModel
    from ..sae.extract import ExtractProgress

PARTS = "parts"
PART_NAME = re.compile(r"rank-(\d{5})-of-(\d{5})")
STORE_FILES = ("shard-", ".shard-", ".manifest")

# extract_part(cases, folder): write `cases` as a complete store in `folder`, continuing
# an unfinished one there (skipping the cases it already committed).
PartExtractor = Callable[[list, Path], None]


def part_folder(store_dir: Path, rank: int, world_size: int) -> Path:
    return store_dir / PARTS / f"rank-{rank:05d}-of-{world_size:05d}"


def cases_of_rank(cases: Sequence, rank: int, world_size: int) -> list:
    """Round robin: rank r takes cases r, r + N, r + 2N, ..."""
    return list(cases[rank::world_size])


def extract_sharded(
    cases: Sequence,
    case_ids: Sequence[str],
    store_dir: str | Path,
    extract_part: PartExtractor,
    group: RankGroup,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> ActivationStore:
    """Call on every rank: extract this rank's cases, then merge all parts into `store_dir`.

    `case_ids[i]` is the id `extract_part` records for `cases[i]`; the merged case table
    follows this order. Returns the merged store on every rank.
    """
    store_dir = Path(store_dir)
    if not case_ids or len(set(case_ids)) != len(case_ids):
        raise ParameterError(f"{store_dir}: the case list is empty or names a case twice; list each case once")
    agree(group, lambda: _prepare(store_dir, group.world_size, resume, overwrite) if group.rank == 0 else None)

    mine = cases_of_rank(cases, group.rank, group.world_size)
    folder = part_folder(store_dir, group.rank, group.world_size)
    agree(group, lambda: None if not mine or _is_complete(folder) else extract_part(mine, folder))

    ranks = [rank for rank in range(group.world_size) if cases_of_rank(case_ids, rank, group.world_size)]
    manifests = agree(
        group, lambda: _read_parts([part_folder(store_dir, r, group.world_size) for r in ranks], case_ids)
    )
    numbers = _shard_numbers(manifests, case_ids)

    def publish_mine() -> list[dict]:
        if group.rank not in ranks:
            return []
        index = ranks.index(group.rank)
        return _publish_shards(store_dir, folder, manifests[index], case_ids, numbers[index])

    published = [shard for shards in group.gather_objects(agree(group, publish_mine)) for shard in shards]
    if group.rank == 0:
        write_json_atomic(store_dir / MANIFEST, _merged_manifest(manifests, case_ids, published))
    group.barrier()
    if group.rank == 0:
        shutil.rmtree(store_dir / PARTS, ignore_errors=True)
    return ActivationStore(store_dir)


def extract_activations_distributed(
    model: SegmentationModel,
    layer: str,
    cases: Sequence[CaseFiles],
    store_dir: str | Path,
    group: RankGroup,
    quotas: Mapping[str, int] | None = None,
    seed: int = 0,
    progress: ExtractProgress | None = None,
    resume: bool = False,
    overwrite: bool = False,
    **options,
) -> ActivationStore:
    """`sae.extract.extract_activations` on every rank of `group`, each on its share of `cases`.

    Call it on every rank with the same arguments; `progress` sees this rank's cases only.
    The voxels sampled from a case depend only on (seed, case id), so the merged store
    holds the rows a single-process capture of the same cases would. `options`: dtype,
    precision (as for `sae.extract.extract_layers`); resume and overwrite act on the whole store.
    """
    from ..sae.extract import extract_activations

    def extract_part(mine: list, folder: Path) -> None:
        extract_activations(model, layer, mine, folder, quotas, seed, progress, resume=True, **options)

    return extract_sharded(
        cases, [files.case_id for files in cases], store_dir, extract_part, group, resume=resume, overwrite=overwrite
    )


def _prepare(store_dir: Path, world_size: int, resume: bool, overwrite: bool) -> None:
    """Rank 0: refuse, clear, or ready a rerun of the store folder before any rank writes."""
    manifest, parts = store_dir / MANIFEST, store_dir / PARTS
    if overwrite:
        _clear(store_dir)
        return
    if manifest.exists():
        if ActivationStore(store_dir, allow_incomplete=True).manifest["state"] == "complete":
            shutil.rmtree(parts, ignore_errors=True)  # left over if a run stopped right after its commit
            raise OutputError(f"{store_dir}: store is already complete; use it, or pass --overwrite to recapture")
        raise OutputError(
            f"{store_dir}: a single-process capture was started here; resume it without torchrun or pass --overwrite"
        )
    started = sorted(p.name for p in parts.iterdir()) if parts.is_dir() else []
    if started and not resume:
        raise OutputError(
            f"{store_dir}: a distributed capture was started here; pass --resume to continue it or --overwrite"
        )
    other = [name for name in started if not (PART_NAME.fullmatch(name) and int(name[-5:]) == world_size)]
    if other:
        raise CompatibilityError(
            f"{store_dir}: the capture was started with another number of ranks ({other[0]}); "
            "resume it with that many ranks or pass --overwrite"
        )
    if not started and store_dir.is_dir() and any(store_dir.iterdir()) and not resume:
        raise OutputError(f"{store_dir}: folder is not empty; choose a new folder or pass --overwrite")
    for file in store_dir.glob("*"):
        if file.is_file() and file.name.startswith(STORE_FILES):
            file.unlink()  # shards republished by a merge that was cut short


def _clear(store_dir: Path) -> None:
    shutil.rmtree(store_dir / PARTS, ignore_errors=True)
    store_dir.mkdir(parents=True, exist_ok=True)
    for file in store_dir.iterdir():
        if file.is_file() and (file.name == MANIFEST or file.name.startswith(STORE_FILES)):
            file.unlink()


def _is_complete(folder: Path) -> bool:
    return (folder / MANIFEST).exists() and ActivationStore(folder, allow_incomplete=True).manifest[
        "state"
    ] == "complete"


def _read_parts(parts: list[Path], case_ids: Sequence[str]) -> list[dict]:
    """Every part's manifest, checked to fit together and to hold exactly the listed cases."""
    manifests = [ActivationStore(part).manifest for part in parts]
    first = manifests[0]
    for part, manifest in zip(parts, manifests):
        for key in ("d_in", "dtype", "info"):
            if manifest[key] != first[key]:
                raise CompatibilityError(
                    f"{part}: {key} differs from {parts[0]} ({manifest[key]!r} vs "
                    f"{first[key]!r}); every rank must run the same model, layer and settings"
                )
    found = [case["case_id"] for manifest in manifests for case in manifest["cases"]]
    if sorted(found) != sorted(case_ids):
        raise IntegrityError(
            f"{parts[0].parent}: the parts hold {len(found)} cases, not the {len(case_ids)} listed; "
            "rerun with --overwrite"
        )
    return manifests


def _shard_numbers(manifests: list[dict], case_ids: Sequence[str]) -> list[list[int]]:
    """The merged store's number of each part's shards: shards ordered by the first case they hold.

    When every case is its own shard (extraction commits case by case), shard i of the
    merged store is case i, exactly as in a single-process capture of the same list.
    """
    position = {case_id: index for index, case_id in enumerate(case_ids)}
    keys = []
    for part, manifest in enumerate(manifests):
        case_ends = list(itertools.accumulate(case["rows"] for case in manifest["cases"]))
        first_row = 0
        for shard, entry in enumerate(manifest["shards"]):
            first_case = manifest["cases"][bisect.bisect_right(case_ends, first_row)]["case_id"]
            keys.append((position[first_case], part, shard))
            first_row += entry["rows"]
    numbers = [[0] * len(manifest["shards"]) for manifest in manifests]
    for number, (_, part, shard) in enumerate(sorted(keys)):
        numbers[part][shard] = number
    return numbers


def _publish_shards(
    store_dir: Path, part: Path, manifest: dict, case_ids: Sequence[str], numbers: list[int]
) -> list[dict]:
    """Copy this rank's shards to the top level as `numbers`, case indices renumbered to the global case table."""
    position = {case_id: index for index, case_id in enumerate(case_ids)}
    renumber = torch.tensor([position[case["case_id"]] for case in manifest["cases"]], dtype=torch.int32)
    store = ActivationStore(part)
    published = []
    for local, (shard, number) in enumerate(zip(manifest["shards"], numbers)):
        columns = store.read_shard(local)
        columns["case_index"] = renumber[columns["case_index"].long()]
        target = store_dir / f"shard-{number:06d}.safetensors"  # the writer's naming
        with atomic_path(target) as tmp:
            save_file(columns, str(tmp))
        published.append({**shard, "file": target.name, "bytes": target.stat().st_size, "sha256": sha256_file(target)})
    return published


def _merged_manifest(manifests: list[dict], case_ids: Sequence[str], published: list[dict]) -> dict:
    by_id = {case["case_id"]: case for manifest in manifests for case in manifest["cases"]}
    return {
        **manifests[0],
        "state": "complete",
        "cases": [by_id[case_id] for case_id in case_ids],
        "shards": sorted(published, key=lambda shard: shard["file"]),
    }
