"""Reading label maps (segmentations, tissue maps) and checking their values.

Label maps must hold integers from a known set; anything else (fractions,
negative numbers, a probability map saved by mistake) is refused with the
offending values named, because a silently cast label map corrupts metrics.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError
from .volumes import Volume, read_volume


def read_label_volume(
    path: str | os.PathLike,
    allowed: tuple[int, ...],
    mapping: dict[int, int] | None = None,
    kind: str = "label",
    hint: str = "",
) -> Volume:
    """Read a label map in its own geometry as uint8, renaming values by `mapping` first.

    `hint` ends the error message for values outside `allowed` (say how to fix it).
    """
    volume = read_volume(path, kind="label")
    present = np.unique(volume.array)
    if np.issubdtype(present.dtype, np.floating) and not np.all(present == np.round(present)):
        raise InputError(f"{path}: {kind} map has non-integer values; a map of integer labels is expected")
    present_ints = {int(v) for v in present}
    mapping = mapping or {}
    clashes = [src for src, dst in mapping.items() if src != dst and src in present_ints and dst in present_ints]
    if clashes:
        raise InputError(
            f"{path}: {kind} map holds both {clashes[0]} and {mapping[clashes[0]]}; the label conventions are mixed"
        )
    renamed = {mapping.get(v, v) for v in present_ints}
    bad = sorted(renamed - set(allowed))
    if bad:
        allowed_text = ", ".join(map(str, allowed))
        raise InputError(f"{path}: {kind} values {bad[:5]} are outside {{{allowed_text}}}{'; ' + hint if hint else ''}")
    lookup = np.arange(max(present_ints) + 1, dtype=np.uint8)  # every value is now known to be small
    for src, dst in mapping.items():
        if src < lookup.size:
            lookup[src] = dst
    volume.array = lookup[volume.array.astype(np.int64)]
    return volume
