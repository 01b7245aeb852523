"""What sits on top of each slice view: its name and a slice slider (scrolling through the volume).

The label `#view-<name>` marks the view for the browser tests; the slider is
trame-slicer's, bound to the view's slice offset.
"""

from __future__ import annotations

from trame.widgets import html
from trame_slicer.app.logic.slice_view_logic import connect_slice_view_slider_to_state
from trame_slicer.app.ui.slider import Slider

VIEW_NAMES = {"Red": "axial", "Green": "coronal", "Yellow": "sagittal"}


def slice_gutter(server, view_id: str, view) -> None:
    name = VIEW_NAMES.get(view.get_singleton_tag(), view.get_singleton_tag())
    html.Div(
        name,
        classes="text-caption px-2",
        style="position: absolute; top: 4px; left: 4px; color: #ddd; pointer-events: none;",
        id=f"view-{name}",
    )
    with html.Div(style="position: absolute; bottom: 0; left: 0; width: 100%;", id=f"slider-{name}"):
        Slider(typed_state=connect_slice_view_slider_to_state(server, view), theme="dark", density="compact")
