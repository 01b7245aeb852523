"""Progress bars on stderr for long work, shared by the CLI commands and the demo pipeline's stages.

Each bar is fed by a library function's progress callback, so the library itself
stays free of terminal output and the CLI and the pipeline draw the same bars.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def case_bar(description: str, total: int, disable: bool = False) -> tqdm:
    """A bar counting cases (capture, evaluation): use as a context manager, `update(1)` per case."""
    return tqdm(total=total, desc=description, unit="case", file=sys.stderr, dynamic_ncols=True, disable=disable)


class TrainingBar:
    """A bar fed by `train_model`'s progress callback: steps, epoch, loss, validation Dice."""

    def __init__(self, description: str):
        self.bar = tqdm(desc=description, unit="step", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, update: Any) -> None:
        self.bar.total = update.epochs * update.steps_per_epoch
        self.bar.n = (update.epoch - 1) * update.steps_per_epoch + update.step
        postfix = {"epoch": f"{update.epoch}/{update.epochs}", "loss": f"{update.loss:.3f}"}
        if update.val_dice is not None:
            postfix["val Dice"] = f"{update.val_dice:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class StageBars:
    """One bar per stage of a study's `progress(stage, done, total)` callback; a context manager closes them."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.bars:
            self.bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, dynamic_ncols=True)
        bar = self.bars[stage]
        bar.update(done - bar.n)

    def __enter__(self) -> StageBars:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self.bars.values():
            bar.close()
