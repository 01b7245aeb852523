"""Which cases choose each latent's label and threshold ("fit") and which only score it ("held out").

A label chosen and scored on the same cases is optimistic: the best-Dice threshold
and the best target are picked to fit those very voxels. So cases are split in
two, deterministically by case id: within each population, cases ordered by the
SHA-256 of their id alternate fit, held out, fit, ... The split is balanced per
population (a population of one case is all fit), does not depend on the order
cases are given in, and is not tied to how ids were numbered (e.g. by site).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _digest(case_id: str) -> str:
    return hashlib.sha256(case_id.encode("utf-8")).hexdigest()


def held_out_cases(cases: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The held-out case ids among (case id, population) pairs."""
    by_population: dict[str, list[str]] = {}
    for case_id, population in cases:
        by_population.setdefault(population, []).append(case_id)
    held_out: set[str] = set()
    for ids in by_population.values():
        ordered = sorted(set(ids), key=lambda i: (_digest(i), i))
        held_out.update(ordered[1::2])
    return frozenset(held_out)
