"""Row sources: what SAE training and evaluation read activation rows from.

A source has `d_in`, `n_rows`, and three ways to read:
- `batches(batch_size, seed, start_batch)`: an endless, deterministic, shuffled
  stream (epoch after epoch). Batch b depends only on (seed, b), so a resumed run
  asks for `start_batch=step` and sees exactly the batches it would have seen.
- `scan(batch_size)`: every row once, in storage order (evaluation).
- `sample(n, seed)`: n rows drawn without replacement (initialisation).

The shuffle is windowed: each epoch orders the source's blocks (shards) at random,
cuts the resulting row sequence into windows of `window_rows`, and permutes rows
inside each window. A window is the only thing held in memory, so a store larger
than memory streams; the next window is read in a background thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import torch


class RowSource(Protocol):
    d_in: int
    n_rows: int

    def batches(self, batch_size: int, seed: int, start_batch: int = 0) -> Iterator[torch.Tensor]: ...

    def scan(self, batch_size: int) -> Iterator[torch.Tensor]: ...

    def sample(self, n: int, seed: int) -> torch.Tensor: ...


def seeded_generator(*keys: int) -> torch.Generator:
    """A generator whose state depends only on the integer keys (seed, epoch, window, ...)."""
    gen = torch.Generator()
    value = 0x9E3779B97F4A7C15
    for key in keys:
        value = (value * 6364136223846793005 + int(key) + 1442695040888963407) % (1 << 63)
    gen.manual_seed(value)
    return gen


def windowed_batches(
    n_rows: int,
    window_rows: int,
    load_window: Callable[[int, int], torch.Tensor],
    batch_size: int,
    start_batch: int = 0,
) -> Iterator[torch.Tensor]:
    """Endless batches over epochs of windows; `load_window(epoch, w)` returns window w, shuffled.

    Windows are laid end to end, epoch after epoch; a batch may span two windows.
    The following window is loaded in a background thread while the current one is used.
    """
    if n_rows < 1:
        raise ValueError("cannot stream batches from an empty source")
    n_windows = -(-n_rows // window_rows)
    position = start_batch * batch_size
    epoch, within = divmod(position, n_rows)
    window, offset = divmod(within, window_rows)

    def following(epoch: int, window: int) -> tuple[int, int]:
        return (epoch, window + 1) if window + 1 < n_windows else (epoch + 1, 0)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load_window, epoch, window)
        pieces: list[torch.Tensor] = []
        held = 0
        while True:
            data = pending.result()[offset:]
            offset = 0
            epoch, window = following(epoch, window)
            pending = pool.submit(load_window, epoch, window)
            pieces.append(data)
            held += data.shape[0]
            while held >= batch_size:
                joined = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
                yield joined[:batch_size]
                pieces, held = [joined[batch_size:]], held - batch_size


class TensorRows:
    """An in-memory (rows x d_in) tensor as a row source; one window is the whole tensor."""

    def __init__(self, rows: torch.Tensor):
        if rows.ndim != 2:
            raise ValueError(f"rows must be a 2-D (rows x channels) tensor, got shape {tuple(rows.shape)}")
        self.rows = rows
        self.n_rows, self.d_in = rows.shape

    def batches(self, batch_size: int, seed: int, start_batch: int = 0) -> Iterator[torch.Tensor]:
        """The batches of one shuffled window per epoch, gathered batch by batch from the epoch's
        permutation: copying the whole tensor shuffled each epoch cost 5 times the gathers."""
        if self.n_rows < 1:
            raise ValueError("cannot stream batches from an empty source")
        epoch, offset = divmod(start_batch * batch_size, self.n_rows)
        order = self._order(seed, epoch)
        while True:
            parts, wanted = [], batch_size
            while wanted:
                part = order[offset : offset + wanted]
                parts.append(part)
                wanted -= part.numel()
                offset += part.numel()
                if offset == self.n_rows:
                    epoch, offset = epoch + 1, 0
                    order = self._order(seed, epoch)
            yield self.rows[torch.cat(parts) if len(parts) > 1 else parts[0]].float()

    def _order(self, seed: int, epoch: int) -> torch.Tensor:
        return torch.randperm(self.n_rows, generator=seeded_generator(seed, epoch))

    def scan(self, batch_size: int) -> Iterator[torch.Tensor]:
        for start in range(0, self.n_rows, batch_size):
            yield self.rows[start : start + batch_size].float()

    def sample(self, n: int, seed: int) -> torch.Tensor:
        n = min(n, self.n_rows)
        return self.rows[torch.randperm(self.n_rows, generator=seeded_generator(seed, -1))[:n]].float()
