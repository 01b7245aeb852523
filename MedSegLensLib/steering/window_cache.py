"""The steering session's per-window tensors (the layer output and what the suffix reads), within a byte budget.

An nnU-Net-sized network at BraTS size has 18 windows of 128^3, and what its suffix reads per window (the
layer output, the entry convolution's output and the full-resolution skip) is ~0.6 GB: ~11 GB for the case.
So the session keeps them only up to a byte budget and rebuilds a dropped batch of windows on demand by
re-running the prefix on its input windows: the same computation on the same input gives the same values
bit for bit, so the exact path's results do not depend on the budget (tested); a steer that reaches a
dropped window costs that window's prefix once more.

Least recently used batches go first, but a batch used during the current update is never dropped for
another batch of the same update: a steer that reaches more windows than fit keeps the ones it met first
and rebuilds the others on each update, instead of rebuilding every one (what plain LRU does to a scan).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


def tensor_bytes(value: Any) -> int:
    """Bytes of the storages behind the tensors in a nested tuple/list (a storage shared by views counted once)."""
    seen: dict[int, int] = {}

    def visit(v: Any) -> None:
        if isinstance(v, torch.Tensor):
            storage = v.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif isinstance(v, (tuple, list)):
            for item in v:
                visit(item)

    visit(value)
    return sum(seen.values())


class WindowCache:
    """Values per batch index within `budget` bytes (None: no limit); a dropped one comes back from `rebuild(index)`."""

    def __init__(self, budget: int | None, rebuild: Callable[[int], Any]):
        self.budget = budget
        self._rebuild = rebuild
        self._held: OrderedDict[int, tuple[Any, int]] = OrderedDict()  # index -> (value, bytes), oldest first
        self._in_update: set[int] | None = None
        self._transient: tuple[int, Any] | None = None  # within an update: the last value that did not fit
        self.rebuilds = 0

    @property
    def nbytes(self) -> int:
        """Bytes held (within an update, one more rebuilt batch that did not fit may be held besides)."""
        return sum(size for _, size in self._held.values())

    def held(self) -> list[int]:
        return list(self._held)

    def put(self, index: int, value: Any) -> bool:
        """Keep `value` for `index` if it fits (dropping least recently used ones not in the current update);
        False when it does not fit (then it is not held at all)."""
        size = tensor_bytes(value)
        if self._in_update is not None:
            self._in_update.add(index)
        if self.budget is not None:
            for old in [i for i in self._held if self._in_update is None or i not in self._in_update]:
                if self.nbytes + size <= self.budget:
                    break
                del self._held[old]
            if self.nbytes + size > self.budget:
                return False
        self._held[index] = (value, size)
        return True

    def get(self, index: int) -> Any:
        """The value for `index`, rebuilt (and kept if it fits) when it was dropped."""
        if index in self._held:
            self._held.move_to_end(index)
            if self._in_update is not None:
                self._in_update.add(index)
            return self._held[index][0]
        if self._transient is not None and self._transient[0] == index:
            return self._transient[1]
        self._transient = None  # free it before rebuilding another
        value = self._rebuild(index)
        self.rebuilds += 1
        if not self.put(index, value) and self._in_update is not None:
            self._transient = (index, value)  # asked for again within the update (codes, then the suffix's inputs)
        return value

    @contextmanager
    def update(self) -> Iterator[None]:
        """Within this block, batches already used are not dropped for others; on leaving it, a batch that did not
        fit is released."""
        self._in_update = set()
        try:
            yield
        finally:
            self._in_update, self._transient = None, None
