"""Weights from a user's files: safetensors, or `torch.load(..., weights_only=True)`, never a full unpickle.

`weights_only=True` makes PyTorch's own restricted unpickler refuse any Python
name outside tensors, plain containers and numbers. On top of that we allow
numpy scalars and numeric dtypes only: nnU-Net stores its training log's Dice
values as numpy scalars. A file that needs anything else is refused without
being run, with the command that extracts its tensors safely.
"""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ...errors import InputError, IntegrityError
from .inert_pickle import is_torchscript_archive, read_inert, tensors_in

# numpy scalars (e.g. np.float32(0.73) in nnU-Net's log) are rebuilt from a dtype and raw bytes: no code runs.
_NUMPY_SCALAR = getattr(np, "_core", np.core).multiarray.scalar
ALLOWED_GLOBALS: list[Any] = [_NUMPY_SCALAR, np.dtype] + [
    type(np.dtype(name))
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
]
# Where trainers keep the network's tensors inside a checkpoint dict, most specific first.
STATE_DICT_KEYS = ("network_weights", "state_dict", "model_state_dict", "model", "net", "network", "weights")
SAFETENSORS_SUFFIX = ".safetensors"


def convert_hint(path: Path) -> str:
    """How to get safe weights out of a refused file: convert a zip archive; a bare pickle cannot be read inertly."""
    if not zipfile.is_zipfile(path):
        return (
            "It is a bare pickle or torch's pre-1.6 format, which cannot be read without running it: "
            "re-save its state dict with a current torch.save only where its origin is trusted"
        )
    out = path.with_suffix(SAFETENSORS_SUFFIX)
    return (
        f"`medseglens convert-checkpoint {path} --out {out}` extracts its tensors without running anything; "
        "use that file"
    )


def load_checkpoint(path: str | Path) -> Any:
    """`torch.load(path, weights_only=True)` with numpy scalars allowed; anything else is a one-line refusal."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    if is_torchscript_archive(path):
        raise InputError(f"{path}: a TorchScript archive, not a checkpoint; import it with --format torchscript")
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        names = _refused_names(path, exc)
        raise IntegrityError(
            f"{path}: refused: it refers to Python objects ({names}) that a weights-only load does not allow; "
            f"loading it fully could run code, and nothing in it was run. {convert_hint(path)}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as exc:
        raise IntegrityError(
            f"{path}: not a readable PyTorch checkpoint ({' '.join(str(exc).split())[:120]})"
        ) from None


def _refused_names(path: Path, exc: Exception) -> str:
    """The non-allowed globals the file names, read from its opcodes without executing them."""
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in ALLOWED_GLOBALS}
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)  # zip archives
    except Exception:  # the legacy format or a bare pickle
        names = _pickle_globals(path)
    names = sorted({n for n in names if n not in allowed})  # a stable message: torch returns them in set order
    if names:
        return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return "objects other than tensors and plain values"


def _pickle_globals(path: Path) -> list[str]:
    """Names imported by the first pickle in `path` (GLOBAL, or STACK_GLOBAL after its two strings)."""
    found, strings = [], []
    try:
        with path.open("rb") as handle:
            for opcode, arg, _ in pickletools.genops(handle):
                if opcode.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str) and "UNICODE" in opcode.name:
                    strings.append(arg)
    except Exception:  # a damaged pickle: report what was read so far
        pass
    return sorted(set(found))


def find_state_dict(obj: Any, source: str, key: str | None = None) -> dict[str, torch.Tensor]:
    """The network's tensors inside a loaded checkpoint: `key`, a known trainer key, or the object itself."""
    if key is not None:
        for part in key.split("."):
            if not isinstance(obj, Mapping) or part not in obj:
                raise InputError(f"{source}: no entry '{key}' in the checkpoint")
            obj = obj[part]
    elif isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        for candidate in STATE_DICT_KEYS:
            if isinstance(obj.get(candidate), Mapping) and _is_tensor_dict(obj[candidate]):
                obj = obj[candidate]
                break
    if not isinstance(obj, Mapping) or not _is_tensor_dict(obj):
        keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else type(obj).__name__
        raise InputError(f"{source}: no state dict of tensors found (top-level entries: {keys}); name it with --key")
    return strip_wrapper_prefix({str(k): v.detach() for k, v in obj.items() if isinstance(v, torch.Tensor)})


def _is_tensor_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def strip_wrapper_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the 'module.' (DataParallel) or '_orig_mod.' (torch.compile) prefix that every name carries."""
    for prefix in ("module.", "_orig_mod."):
        if tensors and all(name.startswith(prefix) for name in tensors):
            tensors = {name[len(prefix) :]: t for name, t in tensors.items()}
    return tensors


def read_weight_file(path: str | Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, a TorchScript archive (its tensors only) or a weights-only checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    if path.suffix == SAFETENSORS_SUFFIX:
        try:
            return strip_wrapper_prefix(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise IntegrityError(
                f"{path}: not a readable safetensors file ({' '.join(str(exc).split())[:120]})"
            ) from None
    if is_torchscript_archive(path):
        tree, _foreign = read_inert(path)
        return strip_wrapper_prefix(tensors_in(tree))
    return find_state_dict(load_checkpoint(path), str(path), key)
