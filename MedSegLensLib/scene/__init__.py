"""MRML scene code shared by the Slicer module, the worker and the browser viewer.

Everything here uses only what the `slicer-core` wheel also offers, so it runs
inside desktop Slicer and in plain Python. No function keeps global state:
each takes the `vtkMRMLScene` (desktop: `slicer.mrmlScene`; trame-slicer:
`SlicerApp().scene`; plain Python: `create_headless_slicer().scene`) and the
nodes it works on. Arrays are [i, j, k] on a `Grid` (normally `case.grid`);
every node carries the input volume's exact geometry. API: docs/scene.md.
"""

from ..errors import CompatibilityError

try:
    import slicer as _slicer
except ImportError:
    _slicer = None
if not hasattr(_slicer, "vtkMRMLScene"):
    raise CompatibilityError(
        "MedSegLensLib.scene needs 3D Slicer's MRML libraries: run inside Slicer or pip install 'medseglens[scene]'"
    )

from .brats_terminology import (  # noqa: E402
    BRATS_REGIONS,
    COLOR_TABLE_NAME,
    TERMINOLOGY_CONTEXT,
    brats_color_table,
    region_of_segment,
    terminology_entry,
    write_brats_color_table,
)
from .case_volumes import CaseNodes, add_case_volumes  # noqa: E402
from .headless import HeadlessSlicer, create_headless_slicer  # noqa: E402
from .hierarchy import case_study_item, parent_item_of, place_beside, place_under, remove_node  # noqa: E402
from .node_files import load_segmentation, save_segmentation, save_volume  # noqa: E402
from .overlays import (  # noqa: E402
    add_latent_overlay,
    overlay_latent,
    set_overlay_threshold,
    set_overlay_window,
    update_latent_overlay,
)
from .provenance import Provenance, attach_provenance, read_provenance  # noqa: E402
from .render import SliceImage, legend_strip, render_orthogonal, render_slice, write_png  # noqa: E402
from .scene_files import load_scene, save_scene  # noqa: E402
from .segmentation import (  # noqa: E402
    add_brats_segmentation,
    has_closed_surface,
    segment_ids_by_value,
    segmentation_to_labels,
    update_preview_segmentation,
)
from .views import show_in_slice_views  # noqa: E402
from .volume_arrays import add_volume_node, node_array, node_grid, set_node_array  # noqa: E402

__all__ = [
    "BRATS_REGIONS",
    "COLOR_TABLE_NAME",
    "CaseNodes",
    "HeadlessSlicer",
    "Provenance",
    "SliceImage",
    "TERMINOLOGY_CONTEXT",
    "add_brats_segmentation",
    "add_case_volumes",
    "add_latent_overlay",
    "add_volume_node",
    "attach_provenance",
    "brats_color_table",
    "case_study_item",
    "create_headless_slicer",
    "has_closed_surface",
    "load_scene",
    "legend_strip",
    "load_segmentation",
    "node_array",
    "node_grid",
    "overlay_latent",
    "parent_item_of",
    "place_beside",
    "place_under",
    "read_provenance",
    "region_of_segment",
    "remove_node",
    "render_orthogonal",
    "render_slice",
    "save_scene",
    "save_segmentation",
    "save_volume",
    "segment_ids_by_value",
    "segmentation_to_labels",
    "set_node_array",
    "set_overlay_threshold",
    "set_overlay_window",
    "show_in_slice_views",
    "terminology_entry",
    "update_latent_overlay",
    "update_preview_segmentation",
    "write_brats_color_table",
    "write_png",
]
