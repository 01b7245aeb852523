"""`serve`: build the trame-slicer application for a workspace and listen on one address.

Rendering is server side and offscreen (EGL), streamed to the page as images by
trame-rca; three slice views, no volume rendering. The page needs nothing from the
internet: trame serves its own scripts, styles and icons.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from .access import TOKEN_QUERY, resolve_access, token_middleware
from .triage_panel import default_case, load_worklist
from .workspace import Workspace, read_workspace

if TYPE_CHECKING:
    from ..triage.read import Worklist


def viewer_url(host: str, port: int, token: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/index.html?{TOKEN_QUERY}={token}"


def configure_offscreen() -> None:
    """Offscreen OpenGL through EGL (no display needed); keep trame from parsing our command line."""
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    os.environ["TRAME_ARGS"] = ""


def build_viewer(server, workspace: Workspace, worklist: Worklist | None = None):
    """Create the Slicer scene, the three slice views, the app logic and the page on `server`."""
    from trame_slicer import module as trame_slicer_module
    from trame_slicer.core import LayoutManager, SlicerApp
    from trame_slicer.rca_view import register_rca_factories
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

    from .app import ViewerApp
    from .ui import build_ui
    from .view_gutter import slice_gutter

    server.enable_module(trame_slicer_module)
    slicer_app = SlicerApp()
    register_rca_factories(slicer_app.view_manager, server, slice_view_ui_f=slice_gutter)
    layout_manager = LayoutManager(slicer_app.scene, slicer_app.view_manager, server)
    axial, coronal, sagittal = (
        ViewLayoutDefinition.axial_view(),
        ViewLayoutDefinition.coronal_view(),
        ViewLayoutDefinition.sagittal_view(),
    )
    grid = Layout(LayoutDirection.Horizontal, [axial, Layout(LayoutDirection.Vertical, [coronal, sagittal])])
    layout_manager.register_layout("three slices", grid)
    layout_manager.set_layout("three slices")
    app = ViewerApp(server, slicer_app, workspace, worklist)
    for view in slicer_app.view_manager.get_slice_views():
        _fit_on_resize(view)
    build_ui(server, layout_manager)
    return app


def _fit_on_resize(view) -> None:
    """Refit each view to the volume when the browser (re)sizes it, so no part is cropped."""
    from vtkmodules.vtkCommonCore import vtkCommand

    view.interactor().AddObserver(vtkCommand.WindowResizeEvent, lambda *_: view.fit_view_to_content())


def serve(
    workspace_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    allow_remote: bool = False,
    case_id: str | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the viewer until interrupted; `announce` receives the address (with its token) once listening."""
    token = resolve_access(host, allow_remote, token)
    workspace = read_workspace(workspace_dir)  # fail fast, before the heavy imports
    if case_id is not None:
        workspace.case(case_id)
    worklist = load_worklist(workspace)  # a bad worklist is one line, before anything starts
    configure_offscreen()
    from trame.app import get_server

    server = get_server(name="medseglens-viewer", client_type="vue3")
    app = build_viewer(server, workspace, worklist)
    opened = workspace.case(case_id) if case_id else default_case(workspace, worklist)
    if opened is not None:
        app.open_case(opened.case_id)
    server.cli.set_defaults(authKey=token)  # wslink refuses a WebSocket hello without it
    server.controller.on_server_bind.add(lambda web_server: web_server.app.middlewares.append(token_middleware(token)))
    server.controller.on_server_ready.add(lambda **_: announce(viewer_url(host, server.port, token)))
    server.start(host=host, port=port, open_browser=False, show_connection_info=False, timeout=0, disable_logging=True)
