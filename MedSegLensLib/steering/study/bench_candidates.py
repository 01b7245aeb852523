"""The benchmark's candidate interventions: the same grid for every method, in units of its own typical activation.

Every method has `directions` x `signs` x `magnitudes` candidates per case
(`sae-multi` fewer). A candidate's key names its method, direction, sign and
magnitude; sign +1 points from the population towards adult where a
population contrast defines it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import ParameterError
from ...steering_contract import RegionSpec, SteeringSpec
from .protocol import Protocol

METHODS = ("sae", "sae-gated", "sae-multi", "mean-diff", "random", "logit-bias")
BASELINES = ("mean-diff", "random", "logit-bias")
SAE_METHODS = ("sae", "sae-gated", "sae-multi")
LOGIT_CLASSES = ("background", "NCR", "ED", "ET")
MIN_FIRING = 0.02
EPS = 1e-3


@dataclass
class BenchCandidate:
    method: str
    key: str
    direction_index: int
    sign: int
    magnitude: float
    spec: SteeringSpec | None = None
    direction: list[float] | None = None
    amount: float = 0.0
    bias: tuple[float, ...] | None = None
    info: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            "method": self.method,
            "key": self.key,
            "direction": self.direction_index,
            "sign": self.sign,
            "magnitude": self.magnitude,
            **self.info,
        }


def population_latents(contrasts: dict, population: str, typical: torch.Tensor, count: int) -> list[tuple[int, int]]:
    """(latent, sign) of the `count` latents whose tumour-row firing differs most between adult and `population`."""
    adult = torch.tensor(contrasts["frequency"]["adult"])
    other = torch.tensor(contrasts["frequency"][population])
    ratio = torch.log2((adult + EPS) / (other + EPS))
    eligible = (torch.maximum(adult, other) >= MIN_FIRING) & (typical > 0)
    order = sorted(range(len(ratio)), key=lambda i: (-float(ratio[i].abs() * eligible[i]), i))
    chosen = [(int(i), 1 if ratio[i] > 0 else -1) for i in order[:count] if eligible[i]]
    if len(chosen) < count:
        raise ParameterError(f"only {len(chosen)} latents fire on tumour rows of adult or {population} cases")
    return chosen


def build_candidates(
    protocol: Protocol, contrasts: dict, typical: torch.Tensor, logit_units: list[float], population: str
) -> list[BenchCandidate]:
    n, signs, magnitudes = protocol.directions, protocol.signs, protocol.magnitudes
    region = RegionSpec("tumour-margin", protocol.margin_mm)
    latents = population_latents(contrasts, population, typical, n)
    out: list[BenchCandidate] = []
    for d, (latent, towards) in enumerate(latents):
        for s in signs:
            for m in magnitudes:
                alpha = s * towards * m
                out.append(
                    BenchCandidate(
                        "sae",
                        f"sae latent {latent} {alpha:+g}",
                        d,
                        s,
                        m,
                        spec=SteeringSpec((latent,), (alpha,), "additive", region),
                        info={"latent": latent, "alpha": alpha},
                    )
                )
    for d, (latent, towards) in enumerate(latents):
        for s in signs:
            for m in magnitudes:
                beta = 1 + m if s * towards > 0 else 1 / (1 + m)
                out.append(
                    BenchCandidate(
                        "sae-gated",
                        f"sae-gated latent {latent} x{beta:.3g}",
                        d,
                        s,
                        m,
                        spec=SteeringSpec((latent,), (beta,), "multiplicative", region),
                        info={"latent": latent, "beta": beta},
                    )
                )
    for k in range(2, n + 1):
        chosen = latents[:k]
        for s in signs:
            for m in magnitudes:
                strengths = tuple(s * towards * m for _, towards in chosen)
                key = f"sae-multi top{k} {'+' if s > 0 else '-'}{m:g}"
                out.append(
                    BenchCandidate(
                        "sae-multi",
                        key,
                        k - 2,
                        s,
                        m,
                        spec=SteeringSpec(tuple(j for j, _ in chosen), strengths, "additive", region),
                        info={"latents": [j for j, _ in chosen], "alphas": list(strengths)},
                    )
                )
    for d, entry in enumerate(contrasts["mean_diff"][population][:n]):
        for s in signs:
            for m in magnitudes:
                out.append(
                    BenchCandidate(
                        "mean-diff",
                        f"mean-diff {entry['group']} {s * m:+g}",
                        d,
                        s,
                        m,
                        direction=entry["direction"],
                        amount=s * m * entry["unit"],
                        info={"group": entry["group"], "unit": entry["unit"]},
                    )
                )
    for d in range(n):
        direction, unit = contrasts["random"][d], contrasts["random_units"][d]
        for s in signs:
            for m in magnitudes:
                out.append(
                    BenchCandidate(
                        "random",
                        f"random {d} {s * m:+g}",
                        d,
                        s,
                        m,
                        direction=direction,
                        amount=s * m * unit,
                        info={"unit": unit},
                    )
                )
    for d, target in enumerate(LOGIT_CLASSES[:n]):
        for s in signs:
            for m in magnitudes:
                bias = [0.0] * len(LOGIT_CLASSES)
                bias[d] = s * m * logit_units[d]
                out.append(
                    BenchCandidate(
                        "logit-bias",
                        f"logit-bias {target} {s * m:+g}",
                        d,
                        s,
                        m,
                        bias=tuple(bias),
                        info={"unit": logit_units[d]},
                    )
                )
    return out


def check_budgets(candidates: list[BenchCandidate], protocol: Protocol) -> dict[str, int]:
    """Candidates per method; refuses a grid where a method gets more than the budget or a baseline fewer."""
    counts = {m: sum(c.method == m for c in candidates) for m in METHODS}
    for method, count in counts.items():
        if count > protocol.budget or (method != "sae-multi" and count != protocol.budget):
            raise ParameterError(f"{method}: {count} candidates, the protocol's budget is {protocol.budget}")
    return counts


def logit_units(logits: list[torch.Tensor], regions: list[np.ndarray | None], quantile: float = 0.99) -> list[float]:
    """Per class: the quantile of |z_c - mean_k z_k| inside each case's region, median over cases."""
    per_case = []
    for z, region in zip(logits, regions):
        z = z[0].flatten(1) if region is None else z[0][:, torch.from_numpy(region)]
        centred = (z - z.mean(0, keepdim=True)).abs()
        per_case.append(
            [float(torch.quantile(c[: 2**24].float(), quantile)) if c.numel() else math.nan for c in centred]
        )
    units = np.nanmedian(np.asarray(per_case, dtype=float), axis=0)
    return [float(u) if np.isfinite(u) and u > 0 else 1.0 for u in units]
