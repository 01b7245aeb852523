"""`medseglens convert-checkpoint`: a checkpoint's tensors into safetensors, running nothing from it.

For files that `torch.load(weights_only=True)` refuses (they name other Python
objects: a trainer's config class, an optimizer, a pickled whole model, or a
malicious payload). The archive is read by `inert_pickle`, which never imports
or calls those objects, so the conversion is safe whatever the file holds.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import InputError
from ...fileio import check_can_write, sha256_file, write_json_atomic
from ..storage import write_weights
from .checkpoints import find_state_dict, load_checkpoint, strip_wrapper_prefix
from .inert_pickle import Opaque, read_inert, tensors_in

SIDECAR_FORMAT = "medseglens.converted-checkpoint"
# torch.nn.Module keeps its tensors under these attribute dicts; a pickled whole model shows them in its names.
_MODULE_DICTS = re.compile(r"(?:^|\.)_(?:modules|parameters|buffers)(?=\.)")


@dataclass
class ConversionResult:
    out: Path
    sidecar: Path
    tensors: int
    not_run: list[str]
    sha256: str


def checkpoint_tensors(path: Path, key: str | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(state dict, names of the objects that were left unrun) of any PyTorch checkpoint file."""
    if not zipfile.is_zipfile(path):  # the legacy format: only what weights_only reads
        return find_state_dict(load_checkpoint(path), str(path), key), []
    tree, foreign = read_inert(path)
    if isinstance(tree, Opaque) and key is None:  # torch.save(model): the module's own attribute dicts
        tensors = {_MODULE_DICTS.sub("", name).lstrip("."): t for name, t in tensors_in(tree.state).items()}
        return strip_wrapper_prefix(tensors), foreign
    return find_state_dict(tree, str(path), key), foreign


def convert_checkpoint(
    source: str | Path, out: str | Path, key: str | None = None, overwrite: bool = False
) -> ConversionResult:
    """Write `out` (.safetensors) and `out`.json (source hash, entry used, objects not run, output hash)."""
    source, out = Path(source), Path(out)
    if not source.is_file():
        raise InputError(f"{source}: checkpoint not found")
    if out.suffix != ".safetensors":
        raise InputError(f"{out}: the output must end in .safetensors")
    sidecar = out.with_name(out.name + ".json")
    check_can_write(out, overwrite)
    tensors, not_run = checkpoint_tensors(source, key)
    tensors = {name: t.contiguous().clone() for name, t in tensors.items()}
    digest = write_weights(tensors, out, {"format": SIDECAR_FORMAT, "source_sha256": sha256_file(source)})
    write_json_atomic(
        sidecar,
        {
            "format": SIDECAR_FORMAT,
            "source": {"path": str(source.resolve()), "sha256": sha256_file(source)},
            "key": key,
            "tensors": len(tensors),
            "not_run": not_run,
            "weights": {"file": out.name, "sha256": digest},
        },
    )
    return ConversionResult(out, sidecar, len(tensors), not_run, digest)
