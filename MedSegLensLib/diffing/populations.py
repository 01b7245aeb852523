"""Which latents of a pooled SAE every population shares, and which are population-specific.

Like is compared with like. Each population p is contrasted with the pooled other
populations ("rest") only on the strata both have enough rows of (white matter with
white matter, edema with edema, ...), and the per-stratum rates are combined with one
fixed set of weights (each stratum's share of the compared rows: direct
standardisation). A population whose stratum mix differs (healthy brains have no
tumour voxels, SSA tumours more edema) therefore does not look different for that
reason alone.

For latent j and population p:
    F_p = sum_s w_s * fired_p[s, j] / rows_p[s]         (standardised firing frequency)
    LR  = log((F_p + f0) / (F_rest + f0))               (f0 = frequency floor)
and likewise for the mean activation (zeros included; floor f0 times the latent's mean
activation when firing). Intervals: percentile bootstrap over cases (cases redrawn
within each population). Tests, one-sided with a normal approximation and the
bootstrap standard error: "enriched" H0: LR <= log(tau), "depleted" H0: LR >= -log(tau);
Benjamini-Hochberg over every test of every population and latent at level alpha.

Classification (see docs/diffing.md):
- absent: in no population does the latent fire in at least f0 of the rows of a stratum
  (one with >= min_stratum_rows rows);
- specific: at least one BH-significant enrichment or depletion (populations listed);
- shared (the backbone): not specific, active in >= 2 populations, and in every
  contrast where it can be compared the 95 % interval of LR lies within +-log(tau);
- inconclusive: the rest (too rare or too variable to call either way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError
from .stats import benjamini_hochberg, case_bootstrap_weights, normal_upper_p, percentile_interval
from .usage import LatentUsage

CATEGORIES = ("shared", "specific", "inconclusive", "absent")


@dataclass(frozen=True)
class PopulationDiffSettings:
    ratio: float = 2.0  # tau: the smallest fold change called population-specific
    alpha: float = 0.05  # BH false discovery rate
    frequency_floor: float = 1e-3  # f0
    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0
    min_stratum_rows: int = 50  # a stratum enters a contrast when both sides have this many rows ...
    min_stratum_cases: int = 2  # ... from at least this many cases
    latent_chunk: int = 1024

    def __post_init__(self) -> None:
        if self.ratio <= 1:
            raise ParameterError(f"ratio must be > 1 (a fold change), got {self.ratio}")
        if not 0 < self.alpha < 1 or not 0 < self.level < 1:
            raise ParameterError("alpha and level must be between 0 and 1")
        if not 0 < self.frequency_floor < 1:
            raise ParameterError(f"frequency floor must be between 0 and 1, got {self.frequency_floor}")
        if self.n_boot < 20:
            raise ParameterError(f"use at least 20 bootstrap replicates (got {self.n_boot})")


@dataclass
class Contrast:
    """Population p against the pooled other populations, per latent."""

    population: str
    strata: list[str]  # strata compared
    weights: list[float]  # their standardisation weights
    n_cases: int
    n_rest_cases: int
    frequency: np.ndarray  # F_p
    frequency_rest: np.ndarray
    log_ratio: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    se: np.ndarray
    activation: np.ndarray  # standardised mean activation (zeros included)
    activation_rest: np.ndarray
    activation_log_ratio: np.ndarray
    activation_ci_low: np.ndarray
    activation_ci_high: np.ndarray
    comparable: np.ndarray  # bool: shared strata exist and one side reaches the floor
    p_enriched: np.ndarray
    p_depleted: np.ndarray
    q_enriched: np.ndarray = field(default=None)
    q_depleted: np.ndarray = field(default=None)


@dataclass
class PopulationDiff:
    populations: list[str]
    contrasts: dict[str, Contrast]
    active: np.ndarray  # (populations, latents) bool
    category: np.ndarray  # (latents,) str
    enriched_in: list[list[str]]
    depleted_in: list[list[str]]
    equivalent: np.ndarray  # (latents,) bool: every comparable contrast's interval within +-log(tau)
    settings: PopulationDiffSettings

    def backbone_summary(self) -> dict:
        """How many latents are shared, specific (per population and direction), inconclusive and absent."""
        counts = {name: int((self.category == name).sum()) for name in CATEGORIES}
        inconclusive = self.category == "inconclusive"
        counts["inconclusive_rare"] = int((inconclusive & (self.active.sum(0) < 2)).sum())
        counts["inconclusive_not_equivalent"] = int((inconclusive & (self.active.sum(0) >= 2)).sum())
        per_population = {
            p: {
                "active": int(self.active[i].sum()),
                "enriched": int(sum(p in e for e in self.enriched_in)),
                "depleted": int(sum(p in d for d in self.depleted_in)),
                "specific": int(sum(p in e or p in d for e, d in zip(self.enriched_in, self.depleted_in))),
            }
            for i, p in enumerate(self.populations)
        }
        return {"latents": int(self.category.size), **counts, "per_population": per_population}


def _common_strata(usage: LatentUsage, inside: np.ndarray, settings: PopulationDiffSettings) -> np.ndarray:
    """Strata with enough rows and cases on both sides of a contrast."""

    def enough(members: np.ndarray) -> np.ndarray:
        rows = usage.rows[members]
        return (rows.sum(0) >= settings.min_stratum_rows) & ((rows > 0).sum(0) >= settings.min_stratum_cases)

    return np.flatnonzero(enough(inside) & enough(~inside))


def _standardised(tally: np.ndarray, rows: np.ndarray, weights: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """sum_s w_s tally[..., s, j] / rows[..., s]; a replicate with no rows in a stratum uses `fallback[s, j]`."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = tally / rows[..., None]
    rate = np.where(rows[..., None] > 0, rate, fallback)
    return np.einsum("s,...sj->...j", weights, rate)


def _active(usage: LatentUsage, population: str, settings: PopulationDiffSettings) -> np.ndarray:
    """Latents firing in at least f0 of the rows of some stratum the population has enough rows of."""
    rows = usage.rows[usage.populations == population].sum(0)
    frequency = np.nan_to_num(usage.stratum_frequency(population), nan=0.0)[rows >= settings.min_stratum_rows]
    return frequency.max(0) >= settings.frequency_floor if frequency.size else np.zeros(usage.n_latents, dtype=bool)


def _resample(boot: np.ndarray, tally: np.ndarray) -> np.ndarray:
    """(B, S, J) bootstrap totals: replicate multiplicities (B, cases) times per-case tallies (cases, S, J)."""
    return (boot @ tally.reshape(tally.shape[0], -1)).reshape(boot.shape[0], *tally.shape[1:])


def _contrast(
    usage: LatentUsage, population: str, boot: np.ndarray, act_floor: np.ndarray, settings: PopulationDiffSettings
) -> Contrast:
    inside = usage.populations == population
    strata = _common_strata(usage, inside, settings)
    n_latents = usage.n_latents
    f0 = settings.frequency_floor
    empty = np.full(n_latents, np.nan)
    names = [usage.strata[s] for s in strata]
    if strata.size == 0:
        nothing = np.zeros(n_latents, dtype=bool)
        return Contrast(
            population,
            [],
            [],
            int(inside.sum()),
            int((~inside).sum()),
            *([empty] * 11),
            comparable=nothing,
            p_enriched=empty,
            p_depleted=empty,
        )
    rows_in, rows_out = usage.rows[inside][:, strata], usage.rows[~inside][:, strata]
    weights = rows_in.sum(0) + rows_out.sum(0)
    weights = weights / weights.sum()
    boot_in, boot_out = boot[:, inside], boot[:, ~inside]
    brows_in, brows_out = boot_in @ rows_in, boot_out @ rows_out  # (B, S)
    out = {k: np.empty(n_latents) for k in ("F", "Fr", "LR", "lo", "hi", "se", "A", "Ar", "ALR", "alo", "ahi")}
    for start in range(0, n_latents, settings.latent_chunk):
        j = slice(start, min(n_latents, start + settings.latent_chunk))
        results = {}
        for kind, tally in (("F", usage.fired), ("A", usage.activation)):
            t_in = tally[inside][:, strata, j].astype(np.float64)
            t_out = tally[~inside][:, strata, j].astype(np.float64)
            point_in = t_in.sum(0) / rows_in.sum(0)[:, None]
            point_out = t_out.sum(0) / rows_out.sum(0)[:, None]
            v_in = _standardised(t_in.sum(0), rows_in.sum(0), weights, point_in)
            v_out = _standardised(t_out.sum(0), rows_out.sum(0), weights, point_out)
            b_in = _standardised(_resample(boot_in, t_in), brows_in, weights, point_in)
            b_out = _standardised(_resample(boot_out, t_out), brows_out, weights, point_out)
            floor = f0 if kind == "F" else f0 * act_floor[j]
            floor = np.maximum(floor, 1e-12)
            lr = np.log(v_in + floor) - np.log(v_out + floor)
            lr_boot = np.log(b_in + floor) - np.log(b_out + floor)
            low, high = percentile_interval(lr_boot, settings.level)
            results[kind] = (v_in, v_out, lr, low, high, lr_boot.std(0, ddof=1))
        out["F"][j], out["Fr"][j], out["LR"][j], out["lo"][j], out["hi"][j], out["se"][j] = results["F"]
        out["A"][j], out["Ar"][j], out["ALR"][j], out["alo"][j], out["ahi"][j], _ = results["A"]
    comparable = np.maximum(out["F"], out["Fr"]) >= f0
    log_tau = math.log(settings.ratio)
    p_enriched = np.where(comparable, normal_upper_p(out["LR"], log_tau, out["se"]), np.nan)
    p_depleted = np.where(comparable, normal_upper_p(-out["LR"], log_tau, out["se"]), np.nan)
    return Contrast(
        population,
        names,
        weights.tolist(),
        int(inside.sum()),
        int((~inside).sum()),
        out["F"],
        out["Fr"],
        out["LR"],
        out["lo"],
        out["hi"],
        out["se"],
        out["A"],
        out["Ar"],
        out["ALR"],
        out["alo"],
        out["ahi"],
        comparable=comparable,
        p_enriched=p_enriched,
        p_depleted=p_depleted,
    )


def diff_populations(usage: LatentUsage, settings: PopulationDiffSettings | None = None) -> PopulationDiff:
    """Contrast every population with the rest, control the FDR over all tests, classify each latent."""
    settings = settings or PopulationDiffSettings()
    populations = usage.population_names()
    if len(populations) < 2:
        raise ParameterError(
            f"the store holds one population ({', '.join(populations)}); population diffing needs two or more"
        )
    active = np.stack([_active(usage, p, settings) for p in populations])
    boot = case_bootstrap_weights(usage.populations, settings.n_boot, settings.seed)
    act_floor = usage.mean_activation_when_firing()
    contrasts = {p: _contrast(usage, p, boot, act_floor, settings) for p in populations}
    present = active.any(0)
    p_all = np.stack(
        [np.where(present, c.p_enriched, np.nan) for c in contrasts.values()]
        + [np.where(present, c.p_depleted, np.nan) for c in contrasts.values()]
    )
    q_all = benjamini_hochberg(p_all)
    n_pop = len(populations)
    for i, contrast in enumerate(contrasts.values()):
        contrast.q_enriched, contrast.q_depleted = q_all[i], q_all[n_pop + i]
    significant = np.nan_to_num(q_all, nan=1.0) < settings.alpha
    enriched_in = [[p for i, p in enumerate(populations) if significant[i, j]] for j in range(usage.n_latents)]
    depleted_in = [[p for i, p in enumerate(populations) if significant[n_pop + i, j]] for j in range(usage.n_latents)]
    log_tau = math.log(settings.ratio)
    equivalent = np.ones(usage.n_latents, dtype=bool)
    for contrast in contrasts.values():
        inside = (contrast.ci_low > -log_tau) & (contrast.ci_high < log_tau)
        equivalent &= ~contrast.comparable | inside
    specific = significant.any(0)
    category = np.full(usage.n_latents, "inconclusive", dtype=object)
    category[(active.sum(0) >= 2) & equivalent] = "shared"
    category[specific] = "specific"
    category[~present] = "absent"
    return PopulationDiff(populations, contrasts, active, category, enriched_in, depleted_in, equivalent, settings)
