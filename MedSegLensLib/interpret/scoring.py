"""Stream cases through the histograms and per-case statistics; finish into a score table.

Per case, every layer voxel gets its "composition": how many case voxels of each
target (and in all) take their code from it under nearest-neighbour resampling.
An active entry then adds that composition to its latent's histogram bin, which
is exactly what binning the resampled latent map voxel by voxel would give.

Fit and held-out cases (split.py) fill separate columns of the same histograms:
their bins share edges, so a threshold chosen on the fit cases is scored exactly
on the held-out ones, and the two halves add up to the all-case scores.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from ..errors import InputError, ParameterError
from ..synth.location_atlas import ATLAS_LABELS
from .artefacts import ArtefactAccumulator, ArtefactScores, ArtefactSettings
from .binned_metrics import TargetScores, score_target
from .evidence import CaseMaps, LayerCodes, layer_index
from .firing import LevelSums, level_keys, threshold_levels
from .histograms import LogHistograms
from .targets import DEFAULT_SHELL_MM, TargetSet, target_masks

METRICS: tuple[str, ...] = (
    "auroc",
    "auroc_error",
    "dice",
    "dice_error",
    "iou",
    "precision",
    "recall",
    "kappa",
    "threshold",
)
N_ATLAS_LABELS = max(ATLAS_LABELS) + 1


@dataclass(frozen=True)
class ScoringSettings:
    """bins_per_octave / n_bins: histogram lattice (see histograms.py); shell_mm: tumour boundary
    half-width; min_firing_ml: a latent "fires" in a case when active on at least this volume at its
    threshold (see firing.py); artefacts: what counts as a lattice, seam, edge or outside-head latent."""

    bins_per_octave: int = 4
    n_bins: int = 64
    shell_mm: float = DEFAULT_SHELL_MM
    min_firing_ml: float = 0.1
    chunk_entries: int = 1 << 20
    artefacts: ArtefactSettings = field(default_factory=ArtefactSettings)

    def __post_init__(self) -> None:
        if not 1 <= self.bins_per_octave <= 64 or self.n_bins < 1 or self.chunk_entries < 1:
            raise ParameterError(f"bins per octave {self.bins_per_octave} must be 1..64; bins and chunk entries >= 1")
        if not self.shell_mm > 0 or not self.min_firing_ml >= 0:
            raise ParameterError(
                f"shell half-width {self.shell_mm} mm must be > 0 and the firing volume {self.min_firing_ml} ml >= 0"
            )


@dataclass
class ScoreTable:
    """Every latent's scores against every target, and where and in which cases it fires.

    metrics[name]: (latents, targets) arrays (see binned_metrics.TargetScores);
    active_ml, peak, mass: (cases, latents) active volume, largest value, sum of value x ml;
    case_volumes: per case, active volume by latent and value level (for `fires`);
    region_mass: activation mass by latent, value level and atlas label (for `region_mass_above`),
    None without atlases.
    held_out: (cases,) whether a case is held out; fit_metrics: `metrics` on the fit cases only (each
    threshold is chosen there); held_out_metrics: on the held-out cases at the fit cases' thresholds
    (AUROC needs no threshold); held_out_positives / held_out_voxels: their target and voxel counts.
    touched_voxels: (2, targets) case voxels of the layer voxels that hold any voxel of the target, on the fit
    and on the held-out cases (`attainable_precision`).
    artefacts: per-latent lattice, seam, edge and outside-head measures (artefacts.py).
    """

    targets: TargetSet
    metrics: dict[str, np.ndarray]
    positives: np.ndarray
    voxels: int
    case_ids: list[str]
    populations: list[str]
    active_ml: np.ndarray
    peak: np.ndarray
    mass: np.ndarray
    case_volumes: list[LevelSums]
    region_mass: LevelSums | None
    settings: ScoringSettings
    bin_ratio: float
    held_out: np.ndarray
    fit_metrics: dict[str, np.ndarray]
    held_out_metrics: dict[str, np.ndarray]
    held_out_positives: np.ndarray
    held_out_voxels: int
    artefacts: ArtefactScores
    touched_voxels: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def n_latents(self) -> int:
        return int(self.active_ml.shape[1])

    @property
    def active(self) -> np.ndarray:
        return (self.active_ml > 0).any(axis=0)

    def volume_above(self, thresholds: np.ndarray) -> np.ndarray:
        """(cases, latents) volume (ml) active at or above each latent's threshold."""
        levels = threshold_levels(thresholds, self.settings.bins_per_octave)
        return np.stack([volumes.at_or_above(levels)[:, 0] for volumes in self.case_volumes])

    def fires(self, thresholds: np.ndarray) -> np.ndarray:
        """(cases, latents): active on at least `min_firing_ml` at or above each latent's threshold."""
        return self.volume_above(thresholds) >= self.settings.min_firing_ml

    def region_mass_above(self, thresholds: np.ndarray) -> np.ndarray | None:
        """(latents, atlas labels) activation mass (value x ml) at or above each latent's threshold."""
        if self.region_mass is None:
            return None
        return self.region_mass.at_or_above(threshold_levels(thresholds, self.settings.bins_per_octave))

    def score(self, metric: str, latent: int, target: str) -> float:
        return float(self.metrics[metric][latent, self.targets.index(target)])

    def prevalence(self, target: str, held_out: bool) -> float:
        """Share of the held-out (or fit) cases' voxels in `target` (NaN when there are no such cases)."""
        positives = int(self.held_out_positives[self.targets.index(target)])
        voxels = self.held_out_voxels
        if not held_out:
            positives, voxels = int(self.positives[self.targets.index(target)]) - positives, self.voxels - voxels
        return positives / voxels if voxels else float("nan")

    def attainable_precision(self, target: str, held_out: bool) -> float:
        """The precision of the best map this layer's grid can draw for `target`: its voxels over all case voxels
        of the layer voxels that hold any of them (a thin class on a coarse layer: far below 1; NaN without any)."""
        t = self.targets.index(target)
        positives = int(self.held_out_positives[t]) if held_out else int(self.positives[t] - self.held_out_positives[t])
        touched = int(self.touched_voxels[int(held_out), t])
        return positives / touched if touched else float("nan")


class LatentScorer:
    """Accumulates cases one at a time (memory: histograms plus a few floats per case and latent).

    held_out: ids of the cases that only score labels (split.held_out_cases); without any, no label
    can be validated.
    """

    def __init__(
        self, n_latents: int, settings: ScoringSettings | None = None, held_out: Collection[str] = frozenset()
    ):
        self.n_latents = int(n_latents)
        self.settings = settings or ScoringSettings()
        self.held_out_ids = frozenset(held_out)
        self.artefacts = ArtefactAccumulator(self.n_latents, self.settings.artefacts)
        self.targets: TargetSet | None = None
        self.histograms: LogHistograms | None = None
        self.positives: np.ndarray | None = None
        self.voxels = 0
        self.case_ids: list[str] = []
        self.populations: list[str] = []
        self._per_case: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.region_mass = LevelSums(self.n_latents, N_ATLAS_LABELS)
        self.cases_with_atlas = 0
        self.case_volumes: list[LevelSums] = []

    def _start(self, maps: CaseMaps) -> None:
        self.targets = TargetSet.for_maps(maps.tissue is not None)
        columns = len(self.targets.names) + 1  # targets, then all voxels; fit cases first, then held-out ones
        self.histograms = LogHistograms(
            self.n_latents, 2 * columns, self.settings.bins_per_octave, self.settings.n_bins
        )
        self.positives = np.zeros((2, len(self.targets.names)), dtype=np.int64)
        self.touched = np.zeros((2, len(self.targets.names)), dtype=np.int64)
        self.split_voxels = np.zeros(2, dtype=np.int64)

    def add_case(self, maps: CaseMaps, codes: LayerCodes) -> None:
        if codes.n_latents != self.n_latents:
            raise ParameterError(
                f"case {maps.case_id}: codes of {codes.n_latents} latents, scorer has {self.n_latents}"
            )
        if maps.case_id in self.case_ids:
            raise InputError(f"case {maps.case_id} was scored twice; case ids must be unique")
        if self.targets is None:
            self._start(maps)
        if (maps.tissue is not None) != self.targets.has_tissue:
            raise InputError(
                f"case {maps.case_id}: tissue map {'missing' if maps.tissue is None else 'present'} while "
                f"other cases {'have' if self.targets.has_tissue else 'lack'} one; give all cases "
                f"tissue maps (-tissue files) or none"
            )
        masks = target_masks(self.targets, maps.label, maps.tissue, maps.grid.spacing, self.settings.shell_mm)
        index = layer_index(maps.grid, codes.grid)
        n_layer = int(np.prod(codes.grid.shape))
        composition = np.stack(
            [np.bincount(index[m], minlength=n_layer) for m in masks]
            + [np.bincount(index.reshape(-1), minlength=n_layer)],
            axis=1,
        ).astype(np.int32)
        split = int(maps.case_id in self.held_out_ids)
        self.positives[split] += masks.reshape(len(masks), -1).sum(axis=1)
        self.touched[split] += [composition[composition[:, t] > 0, -1].sum() for t in range(len(masks))]
        self.split_voxels[split] += index.size
        self.voxels += index.size
        self.artefacts.add_case(codes, maps.grid, index, maps.brain)
        atlas_counts = None
        if maps.atlas is not None:
            atlas_counts = sparse.coo_matrix(
                (np.ones(index.size), (index.reshape(-1), maps.atlas.reshape(-1))), shape=(n_layer, N_ATLAS_LABELS)
            ).tocsr()
            self.cases_with_atlas += 1
        active_ml, mass, peak = (np.zeros(self.n_latents) for _ in range(3))
        volumes = LevelSums(self.n_latents)
        step = self.settings.chunk_entries
        for start in range(0, codes.voxel.size, step):
            voxel, latent, value = (a[start : start + step] for a in (codes.voxel, codes.latent, codes.value))
            keep = value > 0
            voxel, latent, value = voxel[keep], latent[keep], value[keep].astype(np.float64)
            weights = composition[voxel]
            self.histograms.add(latent, value, weights, first_column=split * composition.shape[1])
            volume = weights[:, -1] * maps.voxel_ml
            keys = level_keys(latent, value, self.settings.bins_per_octave)
            volumes.add(keys, volume)
            active_ml += np.bincount(latent, weights=volume, minlength=self.n_latents)
            mass += np.bincount(latent, weights=value * weights[:, -1], minlength=self.n_latents) * maps.voxel_ml
            np.maximum.at(peak, latent, value)
            if atlas_counts is not None:
                per_label = atlas_counts[voxel].tocoo()  # entry x atlas label: voxels it covers
                self.region_mass.add(
                    keys[per_label.row], value[per_label.row] * per_label.data * maps.voxel_ml, per_label.col
                )
        self.case_volumes.append(volumes.merge())
        self.case_ids.append(maps.case_id)
        self.populations.append(maps.population)
        self._per_case.append((active_ml.astype(np.float32), peak.astype(np.float32), mass.astype(np.float32)))

    def finish(self, info: dict | None = None) -> ScoreTable:
        if not self.case_ids:
            raise InputError("no cases were scored; give at least one cohort folder with cases")
        hist = self.histograms
        edges = hist.lower_edges()
        n_targets = len(self.targets.names)
        fit, held_out = hist.counts[:, :, : n_targets + 1], hist.counts[:, :, n_targets + 1 :]
        metrics = _stacked(_score_columns(fit + held_out, self.positives.sum(axis=0), self.voxels, edges))
        fit_scores = _score_columns(fit, self.positives[0], int(self.split_voxels[0]), edges)
        held_out_metrics = _stacked(
            _score_columns(held_out, self.positives[1], int(self.split_voxels[1]), edges, [c.bin for c in fit_scores])
        )
        per_case = [np.stack(column) for column in zip(*self._per_case)]
        region_mass = self.region_mass if self.cases_with_atlas == len(self.case_ids) else None
        return ScoreTable(
            targets=self.targets,
            metrics=metrics,
            positives=self.positives.sum(axis=0),
            voxels=self.voxels,
            case_ids=list(self.case_ids),
            populations=list(self.populations),
            active_ml=per_case[0],
            peak=per_case[1],
            mass=per_case[2],
            case_volumes=self.case_volumes,
            region_mass=region_mass.merge() if region_mass is not None else None,
            settings=self.settings,
            bin_ratio=hist.bin_ratio,
            held_out=np.array([c in self.held_out_ids for c in self.case_ids]),
            fit_metrics=_stacked(fit_scores),
            held_out_metrics=held_out_metrics,
            held_out_positives=self.positives[1].copy(),
            held_out_voxels=int(self.split_voxels[1]),
            artefacts=self.artefacts.finish(),
            touched_voxels=self.touched.copy(),
            info=dict(info or {}),
        )


def _stacked(columns: list[TargetScores]) -> dict[str, np.ndarray]:
    """(latents, targets) arrays per metric from one TargetScores per target."""
    return {name: np.stack([getattr(c, name) for c in columns], axis=1) for name in METRICS}


def _score_columns(
    counts: np.ndarray, positives: np.ndarray, voxels: int, edges: np.ndarray, bins: list[np.ndarray] | None = None
) -> list[TargetScores]:
    """Scores against each target from (latents, bins, targets + all voxels) counts; `bins`: per
    target, thresholds chosen elsewhere (None: the best-Dice threshold here)."""
    total = counts[:, :, -1]
    return [
        score_target(counts[:, :, t], total, int(positives[t]), voxels, edges, None if bins is None else bins[t])
        for t in range(len(positives))
    ]
