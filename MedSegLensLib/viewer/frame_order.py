"""The first view's frame goes out before the other views are drawn.

trame-slicer draws a released view on the event loop (the whole render, synchronously), encodes the picture in a
thread and hands it to the server, which sends it from another loop task. Releasing three views at once therefore
drew all three before the first one's frame left: in Chromium on the demo case the axial frame of a steering
result waited ~50-110 ms for the coronal and sagittal renders (docs/viewer.md, "Steering update latency").
`FrameOrder.release` lets the first view go at once and the others once that view's frame has been sent (or after
`FALLBACK_SECONDS`, should no frame come): the same pictures, the watched one first.

Hearing that a frame was handed over needs trame-rca's image scheduler behind the view (`RcaImageRenderScheduler`:
its public `set_push_callback`, reached through trame-slicer's render strategy); that it has left, trame's
`server.network_completion`. Views without such a scheduler (the tests' offscreen views, which render directly)
are all released at once, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

FALLBACK_SECONDS = 0.5  # the other views are released by then even if the first view's frame never comes


def _frame_scheduler(view):
    """trame-rca's image scheduler behind a trame-slicer view, or None (a view that renders directly)."""
    scheduler = getattr(getattr(view, "_scheduled_render", None), "_scheduler", None)
    if callable(getattr(scheduler, "set_push_callback", None)) and callable(getattr(scheduler, "_push_callback", None)):
        return scheduler
    return None


class FrameOrder:
    """Releases held views one frame apart: the first now, the rest after its frame was sent.

    frames_sent: returns an awaitable that resolves once what the server was handed has been sent (trame's
    `server.network_completion`); without it the rest are released as soon as the first frame is handed over."""

    def __init__(self, frames_sent: Callable[[], Awaitable] | None = None):
        self._frames_sent = frames_sent
        self._waiting: list[tuple[object, bool]] = []  # (view, render block to restore) after the first one's frame
        self._release_count = 0  # which release the waiting views belong to
        self._watched: dict[int, list[Callable[[], None]]] = {}  # per view id: run once at its next frame
        self._fallback: asyncio.TimerHandle | None = None

    def release(self, views: list, blocked: dict[int, bool]) -> None:
        """Set each view's render block back to `blocked[id(view)]` (unblocking redraws it), `views[0]` at once and
        the others after its next frame was sent."""
        self.flush()
        if not views:
            return
        self._release_count += 1
        first, rest = views[0], [(view, blocked[id(view)]) for view in views[1:]]
        if rest and self._watch(first, self._first_frame_handed_over):
            self._waiting = rest
            self._arm_fallback()
            rest = []
        first.set_render_blocked(blocked[id(first)])
        for view, was_blocked in rest:
            view.set_render_blocked(was_blocked)

    def flush(self) -> None:
        """Release the views still waiting (their turn came, the fallback ran out, or another change begins)."""
        waiting, self._waiting = self._waiting, []
        if self._fallback is not None:
            self._fallback.cancel()
            self._fallback = None
        for view, was_blocked in waiting:
            view.set_render_blocked(was_blocked)

    def _first_frame_handed_over(self) -> None:
        if self._frames_sent is None:
            self.flush()
            return
        release = self._release_count

        async def once_sent() -> None:
            await self._frames_sent()
            if release == self._release_count:  # a later change has released (and may hold) views of its own
                self.flush()

        asyncio.get_running_loop().create_task(once_sent())

    def _watch(self, view, then: Callable[[], None]) -> bool:
        """Run `then` once `view` has handed over its next frame; False when that cannot be heard."""
        scheduler = _frame_scheduler(view)
        if scheduler is None:
            return False
        if id(view) not in self._watched:
            pending = self._watched[id(view)] = []
            push = scheduler._push_callback

            def pushed(content, meta, push=push, pending=pending):
                push(content, meta)
                calls, pending[:] = list(pending), []
                for call in calls:
                    call()

            scheduler.set_push_callback(pushed)
        self._watched[id(view)][:] = [then]
        return True

    def _arm_fallback(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a script or test driving the scene): the next change releases them
            return
        self._fallback = loop.call_later(FALLBACK_SECONDS, self.flush)
