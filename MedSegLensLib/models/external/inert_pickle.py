"""Reading the tensors of a PyTorch zip archive without running anything it refers to.

A pickle is a small program: its GLOBAL/REDUCE opcodes import and call any
Python function the file names (`os.system` included). This reader resolves
only the handful of names that rebuild tensors and plain containers (the same
kind of names `torch.load(weights_only=True)` allows); every other name becomes
an `Opaque` stand-in that records its arguments and state and never calls the
real object. Tensors are rebuilt from the archive's raw storage records.

It serves two jobs that `weights_only=True` cannot: extracting the tensors of a
checkpoint that refers to other Python objects (`medseglens convert-checkpoint`),
and reading the weights of a TorchScript archive (which `torch.load` refuses
with `weights_only=True`) without compiling or running its code.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import _utils as torch_utils

from ...errors import InputError

# Plain names a tensor archive needs; nothing here can reach the file system or a shell.
_PLAIN_NAMES: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch_utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch_utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
}


class Opaque:
    """Stands in for an object of a class the reader does not trust: keeps its arguments and state."""

    qualified_name = "?"
    args: tuple = ()
    kwargs: dict = {}
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> Opaque:  # an opaque object used as a function
        return _opaque_class(f"{self.qualified_name}()")(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<not run: {self.qualified_name}>"


def _opaque_class(qualified_name: str) -> type[Opaque]:
    return type("Opaque", (Opaque,), {"qualified_name": qualified_name})


class _InertUnpickler(pickle.Unpickler):
    """A pickle reader whose imports are limited to `_PLAIN_NAMES`, dtypes and storage types."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix
        self.foreign: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        plain = _PLAIN_NAMES.get((module, name))
        if plain is not None:
            return plain
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "torch" and name.endswith("Storage"):
            try:
                return torch.serialization.StorageType(name)
            except (KeyError, AttributeError, RuntimeError):
                pass
        self.foreign.add(f"{module}.{name}")
        return _opaque_class(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent record {str(pid)[:60]}")
        _, storage_type, key, _location, _numel = pid
        dtype = getattr(storage_type, "dtype", None)
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"storage of unknown type {storage_type!r}")
        raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else torch.UntypedStorage(0)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _pickle_record(archive: zipfile.ZipFile, path: Path) -> str:
    names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(names) != 1:
        raise InputError(f"{path}: not a PyTorch archive (no single data.pkl inside); save it with torch.save")
    return names[0][: -len("data.pkl")]


def is_torchscript_archive(path: str | Path) -> bool:
    """TorchScript archives carry their code and constants beside data.pkl."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_inert(path: str | Path) -> tuple[Any, list[str]]:
    """The archive's object tree with tensors rebuilt and every foreign object left `Opaque`; and the foreign names."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _pickle_record(archive, path)
            unpickler = _InertUnpickler(archive.read(f"{prefix}data.pkl"), archive, prefix)
            tree = unpickler.load()
    except zipfile.BadZipFile:
        raise InputError(
            f"{path}: not a zip-format PyTorch file (older torch.save format or a bare pickle); "
            "only zip archives (torch >= 1.6) can be read without running them"
        ) from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
        raise InputError(
            f"{path}: damaged or unsupported PyTorch archive ({' '.join(str(exc).split())[:120]})"
        ) from None
    return tree, sorted(unpickler.foreign)


def tensors_in(tree: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor reachable through dicts, lists and opaque objects' state, keyed by its dotted path."""
    found: dict[str, torch.Tensor] = {}
    stack = [(prefix, tree)]
    seen: set[int] = set()
    while stack:
        name, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, torch.Tensor):
            found[name] = node.detach()
        elif isinstance(node, dict):
            stack.extend((f"{name}.{key}" if name else str(key), value) for key, value in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{name}.{i}" if name else str(i), value) for i, value in enumerate(node))
        elif isinstance(node, Opaque):
            stack.append((name, node.state))
            stack.extend((f"{name}.{i}" if name else str(i), value) for i, value in enumerate(node.args))
    return found
