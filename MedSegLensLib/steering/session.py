"""Interactive steering of one case: everything before the hooked layer is computed once.

    session = SteeringSession(model, sae, case, "model.1.submodule.2", scales=scales)
    result = session.steer(SteeringSpec((12,), (3.0,), "additive"))
    result.prediction.labels                   # on case.grid, like model.predict

The network is split at the layer (`models.split`); the first pass runs the
windows of `model.logits` and keeps, per window, the layer output h and what
the rest of the network reads from before it (skip connections). A steering
change then re-runs only the suffix, per window, and MONAI blends the windows
as inference does. Windows where the change is zero (outside the region) keep
their cached logits. A preview (`exact=False`, U-Net decoders) runs the rest
once over the case grid instead (`frozen.CasePreview`). Codes of the chosen latents are cached per latent set, so
a change of strength does not re-encode. Unsteered, the session's logits are
bit for bit those of `model.logits`. The per-window tensors are held within a byte
budget (`cache_budget_gb`, `window_cache.WindowCache`); a dropped window's are rebuilt
from its input windows when a steer reaches it (exact; costs that window's prefix).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Case
from ..errors import ParameterError
from ..models.inference import Prediction, SegmentationModel
from ..models.split import find_linear_entry, split_network
from ..sae import SparseAutoencoder, check_compatible
from ..steering_contract import RegionSpec, SteeringSpec
from .codes import decoder_directions, latent_codes
from .frozen import CasePreview
from .interventions import coefficient_maps
from .region import region_mask
from .runners import EntryRunner, SuffixRunner
from .scales import LatentScales
from .window_cache import WindowCache, tensor_bytes
from .windows import (
    Blender,
    Box,
    WindowBatch,
    box_zeros,
    layer_gate,
    monai_padding,
    padded,
    run_windows,
    spatial_slices,
    union_box,
)


@dataclass
class SteeringResult:
    """A steered segmentation: labels on the case grid, model-grid logits, and what the update cost."""

    prediction: Prediction
    logits: torch.Tensor
    windows_recomputed: int
    windows_total: int
    seconds: float
    preview: bool = False  # instance-norm statistics were frozen: an approximation; the exact update is steer(spec)
    windows_cropped: int = 0  # of windows_recomputed, those recomputed only on the crop the change reaches


# Bytes of per-window tensors a session holds by default: an nnU-Net v2 3d_fullres network at BraTS size
# (0.6 GB per 128^3 window, 18 windows) then peaks under 8 GB; the demo networks' cases fit whole.
DEFAULT_CACHE_BUDGET_GB = 2.0
_BLENDED = object()  # stands for a tensor of the rest's inputs in `_entry_over`


class SteeringSession:
    """One case, one model, one SAE at one layer: cached prefix, steerable suffix.

    `cache_budget_gb` bounds the per-window tensors held (None: hold all); see `window_cache`.
    """

    def __init__(
        self,
        model: SegmentationModel,
        sae: SparseAutoencoder | None,
        case: Case,
        layer: str,
        scales: LatentScales | None = None,
        sae_sha256: str | None = None,
        fast: bool = True,
        cache_budget_gb: float | None = DEFAULT_CACHE_BUDGET_GB,
    ):
        self.model, self.sae, self.case, self.layer = model, sae, case, layer
        self.scales, self.sae_sha256 = scales, sae_sha256
        split = split_network(model.network, layer)
        self.prepared = model.prepare(case)
        self.roi = tuple(int(s) for s in model.config.patch_size)
        self._runner = None
        self._split, self._fast = split, fast
        self.batches: list[WindowBatch] = []
        self._coords: list[list] = []  # MONAI's slices of each batch's windows: to rebuild a dropped batch
        budget = None if cache_budget_gb is None else int(cache_budget_gb * 1024**3)
        self.window_cache = WindowCache(budget, self._rebuild)
        self._gates: dict[RegionSpec, list[torch.Tensor | None]] = {}
        self.pads = monai_padding(self.prepared.tensor.shape[2:], self.roi)
        with self.window_cache.update():  # keeps the first batches that fit
            self.logits = run_windows(self.prepared.tensor, model.config, self._record)
        self.stride = tuple(r // s for r, s in zip(self.roi, self.layer_shape))
        if sae is not None:
            check_compatible(sae, model.fingerprint, layer, self.channels)
        self._blender = Blender(self.logits, self.batches, model.config, self.pads)
        self._unsteered: Prediction | None = None
        self._case_preview: CasePreview | None = None

    # -- first pass ----------------------------------------------------------------------------
    def _record(self, windows: torch.Tensor, coords: list) -> torch.Tensor:
        h, *boundary = self._split.prefix(windows)
        if self._runner is None:
            entry = find_linear_entry(self._split, int(h.shape[1])) if self._fast else None
            self._runner = (
                EntryRunner(self._split, entry) if entry is not None else SuffixRunner(self._split, local=self._fast)
            )
            self.channels, self.layer_shape = int(h.shape[1]), tuple(h.shape[2:])
        cache, stats, logits = self._runner.record(h, tuple(boundary))
        if not self.batches:
            self._window_bytes = tensor_bytes((h, cache)) // h.shape[0]
        index = len(self.batches)
        self.batches.append(WindowBatch(spatial_slices(coords), logits, stats, lambda: self.window_cache.get(index)))
        self._coords.append([tuple(window) for window in coords])
        self.window_cache.put(index, (h, cache))
        return logits.clone()  # MONAI weights the returned windows in place

    def _rebuild(self, index: int) -> tuple[torch.Tensor, object]:
        """Batch `index`'s h and cache, recomputed from its input windows exactly as the first pass made them
        (without autograd, as there: with it, PyTorch may pick other convolution kernels)."""
        with torch.no_grad():
            h, *boundary = self._split.prefix(self._window_inputs(index))
            return h, self._runner.cache_of(h, tuple(boundary))

    def _window_inputs(self, index: int) -> torch.Tensor:
        """The input windows MONAI handed to the first pass for batch `index`: the image padded as MONAI pads it
        (constant zeros, last axis first), cut the same way (a view for batches of one, else concatenated)."""
        tensor, pad = self.prepared.tensor, [n for before_after in reversed(self.pads) for n in before_after]
        if any(pad):
            tensor = F.pad(tensor, pad, mode="constant", value=0.0)
        coords = self._coords[index]
        if int(self.model.config.sliding_window.get("batch_size", 1)) > 1:
            return torch.cat([tensor[window] for window in coords])
        return tensor[coords[0]]

    def cache_bytes(self) -> dict[str, int]:
        """Bytes the session holds: `windows` (per-window tensors now held, within the budget), `per_window` (what
        one window's tensors take, from the first batch's shapes: × `windows_total` is what holding them all
        would take) and `logits` (the windows' logits, always held)."""
        return {
            "windows": self.window_cache.nbytes,
            "per_window": self._window_bytes,
            "logits": sum(batch.logits.nbytes for batch in self.batches),
        }

    @property
    def uses_entry_shortcut(self) -> bool:
        """True when steering terms are pushed through the suffix's first convolution alone (U-Net decoders)."""
        return isinstance(self._runner, EntryRunner)

    @property
    def previews(self) -> bool:
        """True when `steer(spec, exact=False)` with a region gives a labelled preview (instance norm after the
        U-Net decoder's entry convolution, frozen); otherwise every update is exact."""
        return (
            self._fast
            and isinstance(self._runner, EntryRunner)
            and self._runner.previews
            and all(batch.stats is not None for batch in self.batches)
        )

    @property
    def windows_total(self) -> int:
        return sum(len(batch.slices) for batch in self.batches)

    def unsteered(self) -> Prediction:
        """The model's own segmentation of the case (identical to `model.predict`)."""
        if self._unsteered is None:
            self._unsteered = self.model.to_prediction(self.logits, self.prepared)
        return self._unsteered

    def predicted_tumour(self) -> np.ndarray:
        """The unsteered predicted tumour (any non-background class) on the model grid."""
        background = self.model.config.label_values.index(0) if 0 in self.model.config.label_values else 0
        return (self.logits[0].argmax(0) != background).cpu().numpy()

    # -- steering --------------------------------------------------------------------------------
    def steer(self, spec: SteeringSpec, exact: bool = True) -> SteeringResult:
        """Apply a steering spec (SAE latents) and return the steered segmentation.

        Windows the change does not reach are never re-run. Where the suffix is local (no instance
        norm after the layer, e.g. the SegFormer's decoder fuse layer) only the crop the change can
        reach is re-run, exactly. `exact=False` with a region, where the session `previews`: instance-norm
        statistics are frozen (pooled over the windows) and the rest runs once over the box the change
        reaches on the case grid (fast; the result is labelled `preview=True`; see docs/steering.md for
        the deviation). Without a region, or for other networks, it is exact (`preview=False`).
        """
        if self.sae is None:
            raise ParameterError("this session has no SAE; steer along explicit directions with steer_directions")
        spec.check_latents(self.sae.n_latents)
        latents = spec.latents
        strengths = torch.tensor(spec.strengths, dtype=torch.float32)
        typical = None
        if spec.mode in ("additive", "clamp"):
            if self.scales is None:
                raise ParameterError(
                    f"{spec.mode} steering needs the latents' typical activations: measure them with "
                    "`medseglens steer-scales --sae SAE_DIR --store STORE_DIR`"
                )
            typical = self.scales.of(latents)
        needs_codes = spec.mode in ("multiplicative", "clamp")

        def coefficients(index: int, batch: WindowBatch, gate):
            codes = self.codes(index, latents) if needs_codes else None
            return coefficient_maps(spec.mode, strengths, self.layer_shape, len(batch.slices), typical, codes, gate)

        return self._apply(coefficients, decoder_directions(self.sae, latents), spec.region, exact)

    def steer_directions(
        self, directions: torch.Tensor, amounts: Sequence[float], region: RegionSpec | None = None, exact: bool = True
    ) -> SteeringResult:
        """Add amounts[j] * directions[j] (layer units) at every voxel of the region: baselines without an SAE."""
        directions = torch.as_tensor(directions, dtype=torch.float32).reshape(-1, self.channels)
        amounts_t = torch.tensor(list(amounts), dtype=torch.float32)
        ones = torch.ones(len(amounts_t))

        def coefficients(_index: int, batch: WindowBatch, gate):
            return coefficient_maps("additive", amounts_t, self.layer_shape, len(batch.slices), ones, None, gate)

        return self._apply(coefficients, directions, region or RegionSpec(), exact)

    def codes(self, index: int, latents: Sequence[int]) -> torch.Tensor:
        """Codes of `latents` in window batch `index` (cached per latent set)."""
        batch, key = self.batches[index], tuple(latents)
        if key not in batch.codes:
            batch.codes.clear()  # keep one latent set: a new set replaces the old one
            batch.codes[key] = latent_codes(self.sae, batch.h, latents)
        return batch.codes[key]

    def gates(self, region: RegionSpec) -> list[torch.Tensor | None]:
        """The region on each window batch's layer lattice (None everywhere for the whole volume)."""
        if region not in self._gates:
            mask = region_mask(region, self.prepared.grid, self.predicted_tumour())
            if mask is None:
                self._gates[region] = [None] * len(self.batches)
            else:
                full = torch.from_numpy(padded(mask.astype(np.float32), self.pads))
                self._gates[region] = [layer_gate(full, batch.slices, self.stride) for batch in self.batches]
        return self._gates[region]

    def _apply(self, coefficients, directions: torch.Tensor, region: RegionSpec, exact: bool) -> SteeringResult:
        start = time.perf_counter()
        gates = self.gates(region)
        with torch.no_grad(), self.window_cache.update():
            if not exact and region.kind != "none" and self.previews:
                logits, recomputed, box = self._preview(coefficients, directions, gates)
                preview, cropped = recomputed > 0, recomputed
            else:
                logits, recomputed, cropped, box = self._exact(coefficients, directions, gates)
                preview = False
            prediction = self._prediction_within(logits, box)
        return SteeringResult(
            prediction, logits, recomputed, self.windows_total, time.perf_counter() - start, preview, cropped
        )

    def _exact(self, coefficients, directions: torch.Tensor, gates) -> tuple[torch.Tensor, int, int, Box | None]:
        """(logits, windows recomputed, of them on a crop, the box of the padded grid where logits changed): every
        window the change reaches, re-run exactly."""
        changes, recomputed, cropped = [], 0, 0
        for index, (batch, gate) in enumerate(zip(self.batches, gates)):
            if gate is not None and not bool(gate.any()):
                continue
            c = coefficients(index, batch, gate)
            changed = c.flatten(1).any(1).nonzero().squeeze(1)
            if not len(changed):
                continue
            new, batch_cropped = self._steered_batch(batch, c, directions, changed)
            changes += [(index, int(w), batch.logits[w], out) for w, out in zip(changed, new)]
            recomputed, cropped = recomputed + len(changed), cropped + batch_cropped
        if not changes:
            return self.logits, recomputed, cropped, None
        logits, box = self._blender.blend(changes, self.batches)
        return logits, recomputed, cropped, box

    def _steered_batch(self, batch: WindowBatch, c: torch.Tensor, directions: torch.Tensor, changed: torch.Tensor):
        """(steered logits of the `changed` windows of one batch, how many of them ran on a crop only); the batch's
        tensors are released on return (a rebuilt batch that did not fit the budget is freed for the next)."""
        h, cache = batch.tensors()
        update = (
            self._runner.steered_locally(h, cache, batch.stats, c, directions, batch.logits, changed)
            if self._fast
            else None
        )
        if update is not None:
            return update.logits, update.cropped
        return self._runner.steered(h, cache, c, directions, changed), 0

    def _preview(self, coefficients, directions: torch.Tensor, gates) -> tuple[torch.Tensor, int, Box | None]:
        """(logits, windows whose change went in, the box of the padded grid where logits changed): the windows'
        entry-output changes, blended on the case grid, through the frozen rest once (`frozen.CasePreview`)."""
        parts = []
        for index, (batch, gate) in enumerate(zip(self.batches, gates)):
            if gate is not None and not bool(gate.any()):
                continue
            c = coefficients(index, batch, gate)
            for w in c.flatten(1).any(1).nonzero().squeeze(1).tolist():
                parts.append((index, w, *self._runner.push_box(c[w : w + 1], directions)))
        if not parts:
            return self.logits, 0, None
        box = union_box(parts, self.batches)
        change = self._blender.blend_box(parts, self.batches, box)
        if self._case_preview is None:
            stats = [batch.stats for batch in self.batches]
            self._case_preview = CasePreview(self._runner.frozen, stats, self._blender.shape)
        reach, delta = self._case_preview.delta(box, change, self._entry_over)
        return self._blender.with_change(reach, delta), len(parts), reach

    def _prediction_within(self, logits: torch.Tensor, box: Box | None) -> Prediction:
        """`model.to_prediction(logits)` where the logits differ from the unsteered ones only inside `box` (padded
        grid; None: nowhere): the unsteered labels, recomputed where the box reaches (`model.labels_within`)."""
        unsteered = self.unsteered()
        if box is None:
            labels = unsteered.labels.copy()
        else:
            inner = tuple(
                slice(max(0, b.start - before), min(n, b.stop - before))
                for b, (before, _), n in zip(box, self.pads, logits.shape[2:])
            )
            labels = self.model.labels_within(logits, self.prepared, inner, unsteered.labels)
        return Prediction(labels, unsteered.grid, None, unsteered.model_fingerprint)

    def _entry_over(self, box: Box) -> tuple[torch.Tensor, tuple]:
        """The unsteered entry output and the rest's other inputs over a box of the padded case grid, blended
        from the windows as their logits are (one batch's tensors at a time: they may not all fit the budget)."""
        by_batch: dict[int, list[tuple[int, Box]]] = {}
        for b, w, local in self._blender.parts_over(box, self.batches):
            by_batch.setdefault(b, []).append((w, local))
        outs: list[torch.Tensor] = []
        structure: tuple = ()
        for b, parts in by_batch.items():
            structure = self._blend_batch_into(outs, box, b, parts)
        blended = iter(outs[1:])
        boundary = tuple(next(blended) if value is _BLENDED else value for value in structure)
        return outs[0], boundary

    def _blend_batch_into(self, outs: list[torch.Tensor], box: Box, b: int, parts: list[tuple[int, Box]]) -> tuple:
        """Adds batch b's entry output and the rest's other tensors over `box` to `outs` (made at the first batch);
        returns the rest's other inputs with _BLENDED for each tensor (the batch's tensors are released on return)."""
        entry_out, rest_boundary = self.batches[b].tensors()[1]
        tensors = [entry_out, *(t for t in rest_boundary if isinstance(t, torch.Tensor))]
        if not outs:
            outs.extend(box_zeros(t, box) for t in tensors)
        for out, t in zip(outs, tensors):
            for w, local in parts:
                self._blender.add_part(
                    out, (b, w, local, t[w : w + 1][(slice(None), slice(None), *local)]), self.batches, box
                )
        return tuple(_BLENDED if isinstance(value, torch.Tensor) else value for value in rest_boundary)
