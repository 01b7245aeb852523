"""Named points where a fault test can stop a real command and kill it: `MEDSEGLENS_PAUSE_AT=<name>`.

With the variable set to a point's name, the process prints `medseglens: paused at <name>` on stderr and
sleeps until it is killed, so a test can SIGKILL it at an exact place (after a checkpoint, between a
shard and its commit, before an output is renamed into place). Unset, a point costs one lookup.
Points: `train:epoch-<n>`, `extract:case-<n>`, `store:before-commit`, `write:<file name>`, `job:segment`
(the worker's segment job, while it runs the model: a cancel test's job that cannot finish first).
"""

from __future__ import annotations

import os
import sys
import time

VARIABLE = "MEDSEGLENS_PAUSE_AT"


def pause_point(name: str) -> None:
    if os.environ.get(VARIABLE) == name:
        print(f"medseglens: paused at {name}", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
