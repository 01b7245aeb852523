"""SAE training loop over a row source: seeded, checkpointed, resumable bit for bit.

Per step: sparse loss and gradients (`objective`), decoder-gradient projection,
Adam with linear warm-up and linear decay, decoder renormalisation, dead-latent
bookkeeping (a latent is dead when it has not fired in the last `dead_after_rows`
rows; dead latents feed the AuxK loss), and, for BatchTopK, a running average of
the batch cut (the smallest selected pre-activation) that tracks the inference
threshold; after the last step it is measured again at the final weights. The
first batch index of a resumed run is the checkpoint's step, and every random draw
depends only on the seed, so resuming reproduces the same weights.

Data-parallel training (`MedSegLensLib.distributed`) gives each rank a source that
yields its slice of every batch and a `Reducer` over the ranks: the objective, the
initialisation and the dead-latent counts then see the whole batch, every rank
applies the same update, and only rank 0 writes checkpoints.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ..errors import CompatibilityError, IntegrityError, ParameterError
from ..fileio import atomic_directory
from . import objective
from .init import geometric_median, input_scale_for
from .model import SAEConfig, SparseAutoencoder, check_dictionary
from .reduce import LOCAL, Reducer
from .rows import RowSource, seeded_generator

CHECKPOINT = "checkpoint"
COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class SAETrainingSettings:
    n_latents: int
    k: int
    kind: str = "batchtopk"
    total_rows: int = 2_000_000
    batch_size: int = 4096
    lr: float | None = None  # None: 8e-3 * sqrt(1024 / n_latents), at most 1e-2 (see learning_rate)
    warmup_fraction: float = 0.02
    decay_fraction: float = 0.2
    auxk_alpha: float = 1.0 / 32
    dead_after_rows: int = 500_000
    threshold_momentum: float = 0.99
    init_rows: int = 16384
    seed: int = 0
    compute_dtype: str = "float32"
    checkpoint_every: int = 0  # steps; 0 = no checkpoints

    def __post_init__(self) -> None:
        """Refuse bad settings here, before any caller creates a store, a checkpoint folder or an output."""
        check_dictionary(self.n_latents, self.k, self.kind)
        if self.lr is not None and not self.lr > 0:
            raise ParameterError(f"learning rate {self.lr} must be positive")
        if self.batch_size < 1 or self.total_rows < self.batch_size:
            raise ParameterError(f"need total_rows ({self.total_rows}) >= batch_size ({self.batch_size}) >= 1")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ParameterError(f"compute_dtype {self.compute_dtype!r} unknown; use float32 or bfloat16")

    @property
    def steps(self) -> int:
        return self.total_rows // self.batch_size

    def learning_rate(self) -> float:
        """Adam step size. Voxel stores hold millions, not billions, of rows, so runs are
        hundreds to thousands of steps: a larger step than the LLM recipes' 2e-4/sqrt(M/2^14)
        (inputs are normalised, so one default serves every layer). Evidence:
        `bench/sae_throughput.py --recipe --rows 2400000` (BatchTopK, 1024 latents,
        586 steps): held-out FVU 0.38 / 0.24 / 0.22 at lr 1e-3 / 3e-3 / 8e-3."""
        if self.lr is not None:
            return self.lr
        return min(1e-2, 8e-3 * math.sqrt(1024 / self.n_latents))

    def lr_at(self, step: int) -> float:
        warmup = max(1, int(self.warmup_fraction * self.steps))
        decay = max(1, int(self.decay_fraction * self.steps))
        factor = min(1.0, (step + 1) / warmup, (self.steps - step) / decay)
        return self.learning_rate() * factor


@dataclass
class Progress:
    step: int
    steps: int
    rows: int
    fvu: float
    l0: float
    dead_fraction: float
    auxk: float
    lr: float


@dataclass
class TrainingState:
    """Everything besides the weights that a bit-exact resume needs."""

    step: int = 0
    threshold_sum: float = 0.0  # exponential average of the batch cut, unnormalised
    threshold_weight: float = 0.0
    fvu_ema: float = 1.0
    l0_ema: float = 0.0
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Trains one SAE on one row source; `run()` returns the exported (scale-folded) SAE."""

    def __init__(
        self,
        source: RowSource,
        config: SAETrainingSettings,
        checkpoint_dir: str | Path | None = None,
        reducer: Reducer = LOCAL,
    ):
        self.source, self.config, self.reducer = source, config, reducer
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.sae = SparseAutoencoder(
            SAEConfig(source.d_in, config.n_latents, config.k, config.kind),  # type: ignore[arg-type]
            generator=seeded_generator(config.seed, -2),
        )
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=config.learning_rate(), fused=True)
        self.rows_since_fired = torch.zeros(config.n_latents, dtype=torch.int64)
        self.state = TrainingState()
        self.cut = objective.BatchTopKCut() if config.kind == "batchtopk" else None
        if not (self.checkpoint_dir and self._load_checkpoint()):
            self._initialise()

    def _initialise(self) -> None:
        sample = self.source.sample(self.config.init_rows, self.config.seed)
        scale = input_scale_for(sample, self.reducer)
        with torch.no_grad():
            self.sae.input_scale.fill_(scale)
            self.sae.b_dec.copy_(geometric_median(sample * scale, reducer=self.reducer))

    # -- one step ----------------------------------------------------------------------------
    def step(self, batch: torch.Tensor) -> Progress:
        cfg, sae, state = self.config, self.sae, self.state
        dead = self.rows_since_fired >= cfg.dead_after_rows
        lr = cfg.lr_at(state.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        result = objective.loss_and_gradients(
            sae,
            batch * sae.input_scale,
            dead,
            self.cut,
            cfg.auxk_alpha,
            COMPUTE_DTYPES[cfg.compute_dtype],
            self.reducer,
        )
        sae.project_decoder_gradient()
        self.optimizer.step()
        sae.normalise_decoder()

        self.rows_since_fired += cfg.batch_size  # the whole batch, over all ranks
        self.rows_since_fired[result.fired] = 0
        if self.cut is not None:
            self.cut.update(result.kth_value, result.candidates, round(result.l0 * cfg.batch_size))
            m = cfg.threshold_momentum
            state.threshold_sum = m * state.threshold_sum + (1 - m) * result.kth_value
            state.threshold_weight = m * state.threshold_weight + (1 - m)
            sae.threshold.fill_(state.threshold_sum / state.threshold_weight)
        state.fvu_ema = 0.9 * state.fvu_ema + 0.1 * result.fvu if state.step else result.fvu
        state.l0_ema = 0.9 * state.l0_ema + 0.1 * result.l0 if state.step else result.l0
        state.step += 1
        return Progress(
            state.step,
            cfg.steps,
            state.step * cfg.batch_size,
            result.fvu,
            result.l0,
            float(dead.float().mean()),
            result.auxk,
            lr,
        )

    # -- loop ------------------------------------------------------------------------------
    def run(self, progress: Callable[[Progress], None] | None = None, show_progress: bool = True) -> SparseAutoencoder:
        cfg, state = self.config, self.state
        bar = tqdm(
            total=cfg.steps,
            initial=state.step,
            unit="step",
            file=sys.stderr,
            disable=not show_progress,
            desc="SAE",
            dynamic_ncols=True,
        )
        batches = self.source.batches(cfg.batch_size, cfg.seed, start_batch=state.step)
        try:
            while state.step < cfg.steps:
                info = self.step(next(batches))
                if progress is not None:
                    progress(info)
                if state.step % 50 == 0 or state.step == cfg.steps:
                    state.history.append(
                        {
                            "step": info.step,
                            "fvu": state.fvu_ema,
                            "l0": state.l0_ema,
                            "dead_fraction": info.dead_fraction,
                        }
                    )
                    bar.set_postfix(
                        FVU=f"{state.fvu_ema:.3f}",
                        L0=f"{state.l0_ema:.1f}",
                        dead=f"{info.dead_fraction:.1%}",
                        refresh=False,
                    )
                bar.update(1)
                if (
                    cfg.checkpoint_every
                    and self.checkpoint_dir
                    and self.reducer.rank == 0
                    and state.step % cfg.checkpoint_every == 0
                ):
                    self.save_checkpoint()
            if self.cut is not None:
                self.calibrate_threshold(batches)
        finally:
            bar.close()
            batches.close()
        return self.export()

    @torch.no_grad()
    def calibrate_threshold(self, batches, n_batches: int = 8) -> None:
        """Set the inference threshold to the mean batch cut of the final weights.

        The running average lags while weights still move; a few more batches
        (the stream's next ones, so this is deterministic) measure the cut exactly
        at the weights that are exported. The search starts from the training's
        candidate floor (a fresh floor of 0 would rank every pre-activation: as
        slow as training itself on short runs); the cut is exact either way.
        """
        cuts = []
        cut = copy.copy(self.cut)
        for _ in range(n_batches):
            x = next(batches) * self.sae.input_scale
            selection = objective.select(self.sae, x - self.sae.b_dec, None, cut, reducer=self.reducer)
            codes = selection.codes
            cuts.append(objective.batch_cut(codes, self.reducer))
            cut.update(cuts[-1], selection.candidates, self.config.batch_size * self.config.k)
        self.sae.threshold.fill_(sum(cuts) / len(cuts))

    def export(self) -> SparseAutoencoder:
        """A copy for use on raw activations: input scale folded into biases and threshold."""
        out = copy.deepcopy(self.sae)
        out.fold_input_scale()
        out.requires_grad_(False)
        return out

    def summary(self) -> dict:
        """Training facts for the SAE's sidecar."""
        dead = self.rows_since_fired >= self.config.dead_after_rows
        return {
            "config": asdict(self.config),
            "steps": self.state.step,
            "rows_seen": self.state.step * self.config.batch_size,
            "source_rows": int(self.source.n_rows),
            "final_fvu": self.state.fvu_ema,
            "final_l0": self.state.l0_ema,
            "dead_fraction": float(dead.float().mean()),
            "input_scale": float(self.sae.input_scale),
            "history": self.state.history,
        }

    # -- checkpoints -----------------------------------------------------------------------
    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"sae.{k}": v.detach().clone() for k, v in self.sae.state_dict().items()}
        names = dict(self.sae.named_parameters())
        for name, param in names.items():
            for key, value in self.optimizer.state.get(param, {}).items():
                tensors[f"adam.{name}.{key}"] = torch.as_tensor(value).clone()
        tensors["rows_since_fired"] = self.rows_since_fired.clone()
        return tensors

    def save_checkpoint(self) -> None:
        state = asdict(self.state)
        state["cut"] = [self.cut.floor, self.cut.margin] if self.cut else None
        meta = {"config": asdict(self.config), "d_in": self.source.d_in, "state": state}
        with atomic_directory(self.checkpoint_dir / CHECKPOINT, overwrite=True) as tmp:
            save_file(self._tensors(), str(tmp / "state.safetensors"))
            (tmp / "state.json").write_text(json.dumps(meta, indent=1))

    def _load_checkpoint(self) -> bool:
        folder = self.checkpoint_dir / CHECKPOINT
        if not (folder / "state.json").exists():
            return False
        try:
            meta = json.loads((folder / "state.json").read_text())
            tensors = load_file(str(folder / "state.safetensors"))
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{folder}: unreadable checkpoint ({exc}); delete it to start over") from None
        if meta["config"] != asdict(self.config) or meta["d_in"] != self.source.d_in:
            raise CompatibilityError(
                f"{folder}: checkpoint was written with other settings; use the same settings to resume, "
                "or delete the checkpoint to start over"
            )
        self.sae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("sae.")})
        for name, param in self.sae.named_parameters():
            prefix = f"adam.{name}."
            slot = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            if slot:
                self.optimizer.state[param] = slot
        self.rows_since_fired = tensors["rows_since_fired"]
        saved = meta["state"]
        self.state = TrainingState(**{k: v for k, v in saved.items() if k != "cut"})
        if self.cut is not None:
            self.cut.floor, self.cut.margin = saved["cut"]
        return True


def train_sae(
    source: RowSource,
    config: SAETrainingSettings,
    checkpoint_dir: str | Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    show_progress: bool = True,
) -> tuple[SparseAutoencoder, dict]:
    """Train (or resume from `checkpoint_dir`) and return the exported SAE and its training summary."""
    trainer = Trainer(source, config, checkpoint_dir)
    sae = trainer.run(progress, show_progress)
    return sae, trainer.summary()
