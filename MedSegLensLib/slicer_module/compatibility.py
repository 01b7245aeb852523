"""The oldest 3D Slicer the module supports, and the message an older one shows instead of the panel.

Slicer 5.10 added `vtkSegment.SetTerminology/GetTerminology` and the colour
table's `SetTerminology`, which every segmentation MedSegLens imports uses;
Slicer 5.8 stores terminology as a segment tag instead. Rather than keep a
second, untested code path for 5.8, the module refuses older Slicer clearly at
start-up. The same minimum is declared in CMakeLists.txt, README.md and
docs/slicer.md; `Testing/test_slicer_api_names.py` checks the calls against
the names Slicer declares at this version.
"""

from __future__ import annotations

MINIMUM_SLICER = (5, 10)
MINIMUM_SLICER_TEXT = "3D Slicer {}.{}".format(*MINIMUM_SLICER)


def unsupported_slicer(major: int, minor: int) -> str | None:
    """The message to show in a Slicer older than the minimum (None when this Slicer is supported)."""
    if (int(major), int(minor)) >= MINIMUM_SLICER:
        return None
    return (
        f"MedSegLens needs {MINIMUM_SLICER_TEXT} or newer; this is 3D Slicer {major}.{minor}. "
        "Install the current Slicer release from download.slicer.org and open MedSegLens there."
    )
