"""The calibration reference: what "usual" looks like, and the SAE risk's weights, fit on calibration cases only.

    reference = fit_reference(calibration_records, ReferenceSettings())
    scores = reference.scores(record)        # every score of one case (higher = more likely to fail)
    reference.to_json() / Reference.from_json(data)

From the reference population's calibration cases (adult by default):
- rare latents: firing in less than `rare_frequency` of brain voxels;
- tumour latents: firing inside the predicted tumour at least `enrichment`
  times as often as in the rest of the brain; `kappa`, the number of them
  active per predicted tumour voxel, and `background`, per other brain voxel.
  Most of their firings are background (median 81-87 % per case, bench and demo SAEs),
  so a case's latent tumour volume solves count = kappa V + background (brain - V)
  for V; counting every firing as tumour gave about the same volume in every
  case, and a "disagreement" that only read the predicted volume (largest
  where none is predicted: healthy cases);
- each latent's usual share of the activation mass (for "top latents");
- the mean and spread of the log predicted volume (volume outlier baseline).
From all calibration cases: each population's failure rate (the "known
population" baseline) and the weights of the standardised SAE features in the
risk. A logistic regression (fixed L2 strength `c`, balanced classes) needs
enough failures to fit: about 10 events per variable (Peduzzi et al. 1996,
J Clin Epidemiol 49:1373). With fewer than 10 failures per feature the fitted
weights are noise (the demo's 3 failures flipped their signs across bootstrap
resamples and ranked worse than chance, docs/triage.md), so the risk instead
adds the standardised features with equal weights, each in the direction
fixed below. `ReferenceSettings(weights="fitted")` always fits (the held-out
benchmark's registered method); `Reference.weights` says which was used.
The weights are stored as numbers in JSON, never pickled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InputError

SAE_FEATURES = ("fvu_tumour", "fvu_brain", "ood_mass", "volume_disagreement")
BASELINES = ("entropy", "max_prob", "tta_volume_cv", "volume_outlier", "known_population")
SCORES = ("sae_risk", *BASELINES)
EVENTS_PER_FEATURE = 10  # failures a fit needs per feature (Peduzzi et al. 1996); fewer: equal weights
# The direction in which each feature means "more likely to fail", fixed before looking at any result:
FAILURE_SIGN = {
    "fvu_tumour": 1.0,  # the SAE reconstructs activations unlike its training cases worse: error up, risk up
    "fvu_brain": 1.0,  # the same over the whole brain: a scan unlike the training scans
    "ood_mass": 1.0,  # mass on latents that usual cases almost never use: an unusual case, risk up
    "volume_disagreement": 1.0,  # the latents' tumour volume and the model's disagree: one of them is wrong
}
WEIGHT_RULES = ("auto", "fitted")  # auto: fit with enough failures, else equal weights; fitted: always fit


@dataclass(frozen=True)
class ReferenceSettings:
    reference_population: str = "adult"
    rare_frequency: float = 0.001
    enrichment: float = 4.0
    min_tumour_rate: float = 0.05
    c: float = 1.0
    weights: str = "auto"  # WEIGHT_RULES

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_RULES:
            raise InputError(f"weights {self.weights!r}: use one of {', '.join(WEIGHT_RULES)}")


@dataclass
class Reference:
    settings: ReferenceSettings
    rare: list[int]
    tumour_latents: list[int]
    kappa: float
    usual_share: list[float]
    log_volume: tuple[float, float]
    failure_rates: dict[str, float]
    feature_mean: list[float]
    feature_scale: list[float]
    coef: list[float]
    intercept: float
    calibration_ids: list[str] = field(default_factory=list)
    sae_sha256: str = ""  # of the SAE folder's weights, so a reference is not reused with another SAE
    background: float = 0.0  # a reference saved before it existed scores as it was fit: every firing counted
    weights: str = "fitted"  # or "equal (N failures < 10 per feature)"; references before the rule were fitted

    # -- scores ----------------------------------------------------------------------------------
    def sae_features(self, record: dict) -> dict[str, float]:
        """The SAE quantities the risk combines (SAE only: reconstruction, latent counts, predicted volume)."""
        sae = record["sae"]
        mass = np.asarray(sae["brain_mass"], dtype=float)
        total = mass.sum()
        ood = float(mass[self.rare].sum() / total) if total > 0 and self.rare else 0.0
        disagreement = 0.0
        if self.kappa > 0:
            disagreement = abs(math.log((self.latent_volume(record) + 1.0) / (sae["tumour_voxels"] + 1.0)))
        fvu_brain = sae["fvu_brain"]
        fvu_tumour = sae["fvu_tumour"] if math.isfinite(sae["fvu_tumour"]) else fvu_brain
        return {"fvu_tumour": fvu_tumour, "fvu_brain": fvu_brain, "ood_mass": ood, "volume_disagreement": disagreement}

    def latent_volume(self, record: dict) -> float:
        """Tumour voxels the tumour latents' firings imply (layer grid), their background rate taken out; >= 0."""
        sae = record["sae"]
        count = float(np.asarray(sae["brain_counts"], dtype=float)[self.tumour_latents].sum())
        return max(0.0, (count - self.background * sae["brain_voxels"]) / (self.kappa - self.background))

    def sae_risk(self, record: dict) -> float:
        features = self.sae_features(record)
        x = (np.array([features[f] for f in SAE_FEATURES]) - self.feature_mean) / self.feature_scale
        return float(1.0 / (1.0 + math.exp(-(float(x @ np.asarray(self.coef)) + self.intercept))))

    def scores(self, record: dict) -> dict[str, float]:
        """Every score of a case; higher means more likely to fail. Only `sae_risk` reads SAE quantities."""
        volumes = np.asarray(record["baselines"]["volumes_ml"], dtype=float)
        mean, spread = self.log_volume
        population = record.get("population", "unknown")
        return {
            "sae_risk": self.sae_risk(record),
            "entropy": float(record["baselines"]["entropy"]),
            "max_prob": float(record["baselines"]["max_prob"]),
            "tta_volume_cv": float(volumes.std() / volumes.mean()) if len(volumes) > 1 and volumes.mean() > 0 else 0.0,
            "volume_outlier": abs(math.log1p(record["pred_volume_ml"]) - mean) / spread,
            "known_population": self.failure_rates.get(population, self.failure_rates["all"]),
        }

    def top_latents(self, record: dict, count: int = 5) -> list[tuple[int, float]]:
        """The latents whose share of the case's activation mass most exceeds their usual share (latent, excess)."""
        mass = np.asarray(record["sae"]["brain_mass"], dtype=float)
        share = mass / mass.sum() if mass.sum() > 0 else mass
        excess = share - np.asarray(self.usual_share)
        order = [int(j) for j in np.argsort(-excess, kind="stable")[:count] if excess[j] > 0]
        return [(j, round(float(excess[j]), 4)) for j in order]

    # -- storage ---------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Reference:
        try:
            values = dict(data)
            values["settings"] = ReferenceSettings(**values["settings"])
            values["log_volume"] = tuple(values["log_volume"])
            return cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a triage reference ({' '.join(str(exc).split())[:100]})") from None


def _latent_statistics(records: list[dict], settings: ReferenceSettings) -> dict:
    counts = np.sum([r["sae"]["brain_counts"] for r in records], axis=0).astype(float)
    inside = np.sum([r["sae"]["tumour_counts"] for r in records], axis=0).astype(float)
    brain = float(sum(r["sae"]["brain_voxels"] for r in records))
    tumour = float(sum(r["sae"]["tumour_voxels"] for r in records))
    frequency = counts / max(brain, 1.0)
    rate_in = inside / max(tumour, 1.0)
    rate_out = (counts - inside) / max(brain - tumour, 1.0)
    enriched = (rate_in >= settings.min_tumour_rate) & (rate_in >= settings.enrichment * rate_out)
    tumour_latents = np.flatnonzero(enriched).tolist()
    # kappa >= enrichment x background by the selection (enrichment > 1): the latent volume divides by their gap
    kappa = float(inside[tumour_latents].sum() / tumour) if tumour > 0 and tumour_latents else 0.0
    shares = []
    for r in records:
        mass = np.asarray(r["sae"]["brain_mass"], dtype=float)
        shares.append(mass / mass.sum() if mass.sum() > 0 else mass)
    return {
        "rare": np.flatnonzero(frequency < settings.rare_frequency).tolist(),
        "tumour_latents": tumour_latents,
        "kappa": kappa,
        "background": float(rate_out[tumour_latents].sum()) if kappa > 0 else 0.0,
        "usual_share": np.mean(shares, axis=0).round(6).tolist(),
    }


def _failure_rates(records: list[dict]) -> dict[str, float]:
    rates = {"all": float(np.mean([r["failure"] for r in records]))}
    for population in sorted({r["population"] for r in records}):
        rates[population] = float(np.mean([r["failure"] for r in records if r["population"] == population]))
    return rates


def fit_reference(records: list[dict], settings: ReferenceSettings = ReferenceSettings()) -> Reference:
    """Fit the reference on labelled calibration records (refuses unlabelled or one-class calibration sets)."""
    from sklearn.linear_model import LogisticRegression

    if any(r["failure"] is None for r in records):
        raise InputError("calibration cases need reference segmentations (-seg files) to know which failed")
    failures = [bool(r["failure"]) for r in records]
    if all(failures) or not any(failures):
        raise InputError(
            f"the {len(records)} calibration cases {'all fail' if all(failures) else 'all succeed'}; "
            "the SAE risk's weights need both failures and successes: add calibration cases"
        )
    usual = [r for r in records if r["population"] == settings.reference_population]
    if len(usual) < 2:
        raise InputError(
            f"{len(usual)} calibration case(s) of population {settings.reference_population!r}; "
            "the reference needs at least 2"
        )
    log_volumes = np.log1p([r["pred_volume_ml"] for r in usual])
    reference = Reference(
        settings=settings,
        **_latent_statistics(usual, settings),
        log_volume=(float(log_volumes.mean()), float(max(log_volumes.std(), 1e-3))),
        failure_rates=_failure_rates(records),
        feature_mean=[0.0] * len(SAE_FEATURES),
        feature_scale=[1.0] * len(SAE_FEATURES),
        coef=[0.0] * len(SAE_FEATURES),
        intercept=0.0,
        calibration_ids=[r["case_id"] for r in records],
    )
    x = np.array([[reference.sae_features(r)[f] for f in SAE_FEATURES] for r in records])
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-9] = 1.0
    reference.feature_mean, reference.feature_scale = mean.round(8).tolist(), scale.round(8).tolist()
    failed = sum(failures)
    if settings.weights == "fitted" or failed >= EVENTS_PER_FEATURE * len(SAE_FEATURES):
        fit = LogisticRegression(C=settings.c, class_weight="balanced", max_iter=1000)
        fit.fit((x - mean) / scale, np.array(failures, dtype=int))
        reference.coef, reference.intercept = fit.coef_[0].round(8).tolist(), round(float(fit.intercept_[0]), 8)
    else:  # the mean signed standardised feature: 0.5 is the calibration cases' average
        reference.coef = [FAILURE_SIGN[f] / len(SAE_FEATURES) for f in SAE_FEATURES]
        reference.weights = f"equal ({failed} failures < {EVENTS_PER_FEATURE} per feature)"
    return reference


def check_disjoint(calibration_ids: list[str], case_ids: list[str]) -> None:
    """Refuse to score calibration cases as if they were held out."""
    shared = sorted(set(calibration_ids) & set(case_ids))
    if shared:
        raise InputError(
            f"{len(shared)} case(s) were used to calibrate the risk ({', '.join(shared[:3])}"
            f"{', ...' if len(shared) > 3 else ''}); held-out evaluation needs other cases"
        )
