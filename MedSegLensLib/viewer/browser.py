"""Driving the viewer from a real headless Chromium: server subprocess, browser, frames, latency.

Used by the browser tests, the latency benchmark and anything that needs a screenshot
of the viewer. Debian's `/usr/bin/chromium` through Playwright (never a downloaded
browser); the server is a real `medseglens serve` subprocess on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWS = ("axial", "coronal", "sagittal")
READY = re.compile(r"MedSegLens viewer: (http://\S+)")


def chromium_path() -> str | None:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen
    log: list[str]

    @property
    def origin(self) -> str:
        return self.url.split("/index.html")[0]


@contextlib.contextmanager
def viewer_server(
    workspace: str | os.PathLike, env: dict | None = None, timeout: float = 120.0, extra_args: tuple[str, ...] = ()
) -> Iterator[ServerProcess]:
    """Start `medseglens serve --port 0` on loopback; yield once it prints its address; stop it after."""
    command = [
        sys.executable,
        "-m",
        "MedSegLensLib",
        "serve",
        "--workspace",
        str(workspace),
        "--port",
        "0",
        *extra_args,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def pump():
        for line in process.stdout:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url = _wait_for_address(lines, timeout, log)
        yield ServerProcess(url=url, process=process, log=log)
    finally:
        _stop(process)


def _wait_for_address(lines: queue.Queue, timeout: float, log: list[str]) -> str:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            raise RuntimeError("the viewer server exited before listening:\n" + "".join(log[-20:]))
        match = READY.search(line)
        if match:
            return match.group(1)
    raise RuntimeError(f"the viewer server printed no address within {timeout:.0f} s:\n" + "".join(log[-20:]))


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextlib.contextmanager
def chromium(playwright, viewport=(1400, 850)):
    """A fresh headless Chromium (own profile folder) and one page."""
    executable = chromium_path()
    if executable is None:
        raise RuntimeError("Debian chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="medseglens-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            args=list(CHROMIUM_FLAGS),
            headless=True,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


# Finds view `n`'s <img> (the frames streamed by trame-rca) next to its `#view-<n>` label.
FIND_IMAGE = (
    "const findImage = (n) => { const label = document.getElementById('view-' + n);"
    " return label && label.parentElement.querySelector('img.image-display-area'); };"
)


def wait_for_frames(page, views=VIEWS, timeout_ms: float = 60000) -> None:
    """Wait until every view shows a decoded frame (not the loading page)."""
    page.wait_for_function(
        f"""(names) => {{ {FIND_IMAGE}
              return names.every((n) => {{
                const i = findImage(n); return i && i.complete && i.naturalWidth > 0; }}); }}""",
        arg=list(views),
        timeout=timeout_ms,
    )


def view_pixels(page, name: str):
    """The view's current frame as an RGB array, read from the <img> itself (no controls on top)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    url = page.evaluate(
        f"""(name) => {{ {FIND_IMAGE}
              const img = findImage(name); const c = document.createElement('canvas');
              c.width = img.naturalWidth; c.height = img.naturalHeight;
              c.getContext('2d').drawImage(img, 0, 0); return c.toDataURL('image/png'); }}""",
        name,
    )
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)


def changed_pixels(before, after, level: float = 30.0):
    """Pixels whose RGB changed by more than `level` (sum over channels): tolerant of compression noise."""
    import numpy as np

    return np.abs(after - before).sum(axis=-1) > level


def settled_pixels(page, name: str, quiet_ms: int = 400, timeout_s: float = 60.0):
    """The view's pixels once no new frame has arrived for `quiet_ms`."""
    import time

    import numpy as np

    last, since, start = view_pixels(page, name), time.monotonic(), time.monotonic()
    while time.monotonic() - since < quiet_ms / 1000 and time.monotonic() - start < timeout_s:
        time.sleep(0.1)
        now = view_pixels(page, name)
        if now.shape != last.shape or np.abs(now - last).max() > 0:
            last, since = now, time.monotonic()
    return last


# trame sends each picture twice, as JPEG of quality 50 and then 90; the two differ by up to ~54 (summed over
# RGB) on edges. A comparison meant to find "no change" uses this level; real changes (an overlay, outline
# colours against grey MRI) move pixels by far more.
SAME_PICTURE_LEVEL = 90.0


def steady_pixels(page, name: str, timeout_s: float = 180.0):
    """The view's frame once two settled frames are identical (the higher-quality re-send has arrived, or
    none is coming)."""
    import time

    import numpy as np

    last, deadline = settled_pixels(page, name), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = settled_pixels(page, name, quiet_ms=1000)
        if np.array_equal(now, last):
            return now
        last = now
    raise TimeoutError(f"the {name} view kept changing for {timeout_s:.0f} s")


def frame_latency_ms(page, name: str, selector: str, key: str | None = None, timeout_ms: float = 30000) -> float:
    """Click `selector` (or send it `key`, e.g. to a slider thumb) and time, inside the page, until view
    `name` shows its next frame."""
    return page.evaluate(
        f"""async ([name, selector, key, timeout]) => {{ {FIND_IMAGE}
              const before = findImage(name).src; const target = document.querySelector(selector);
              if (!target) throw new Error('no element ' + selector);
              return await new Promise((resolve, reject) => {{
                const start = performance.now();
                const check = () => {{
                  const img = findImage(name);
                  if (img && img.src !== before && img.complete && img.naturalWidth > 0) {{
                    resolve(performance.now() - start); return; }}
                  if (performance.now() - start > timeout) {{
                    reject(new Error('no new frame after ' + selector)); return; }}
                  requestAnimationFrame(check);
                }};
                if (key) target.dispatchEvent(new KeyboardEvent('keydown', {{ key, bubbles: true }}));
                else target.click();
                requestAnimationFrame(check);
              }}); }}""",
        [name, selector, key, timeout_ms],
    )


def save_screenshot(page, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    return path
