"""numpy arrays <-> MRML volume nodes, keeping the voxel-to-RAS geometry exact.

MedSegLens arrays are indexed [i, j, k] (nibabel order); VTK image data, and
therefore every numpy view of a Slicer volume, is [k, j, i]. The node's
IJK-to-RAS matrix is the NIfTI affine of the array it holds, so a voxel keeps
its physical position in both directions.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from ..data.geometry import Grid, canonical_grid, from_canonical, resample_to_grid
from ..errors import ParameterError


def matrix_from_affine(affine: np.ndarray) -> vtkMatrix4x4:
    matrix = vtkMatrix4x4()
    matrix.DeepCopy(np.asarray(affine, dtype=float).ravel().tolist())
    return matrix


def affine_from_matrix(matrix: vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def node_grid(node) -> Grid:
    """The grid (shape [i, j, k] and IJK-to-RAS affine) of a volume node."""
    image = node.GetImageData()
    if image is None:
        raise ParameterError(f"volume node '{node.GetName()}' holds no image data; load or compute it first")
    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return Grid(tuple(int(d) for d in image.GetDimensions()), affine_from_matrix(matrix))


def _vtk_ready(array: np.ndarray) -> np.ndarray:
    """Voxel types VTK and Slicer handle well: float32 maps, bool as uint8."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating) and array.dtype != np.float32:
        return array.astype(np.float32)
    return array


def set_node_array(node, array: np.ndarray, grid: Grid) -> None:
    """Replace a volume node's voxels and geometry with `array` in `grid`'s voxel order.

    Observers (slice views, the browser viewer) see one modification, so this is
    also the fast path for stepping through latent maps in place.
    """
    array = _vtk_ready(array)
    if array.ndim != 3 or tuple(array.shape) != tuple(grid.shape):
        raise ParameterError(f"array of shape {array.shape} does not match grid {tuple(grid.shape)}")
    flat = np.ascontiguousarray(array.transpose(2, 1, 0)).ravel()
    scalars = numpy_support.numpy_to_vtk(flat, deep=True, array_type=numpy_support.get_vtk_array_type(flat.dtype))
    scalars.SetName("ImageScalars")
    image = vtkImageData()
    image.SetDimensions(*(int(s) for s in grid.shape))
    image.GetPointData().SetScalars(scalars)
    was_modifying = node.StartModify()
    node.SetIJKToRASMatrix(matrix_from_affine(grid.affine))
    node.SetAndObserveImageData(image)
    node.EndModify(was_modifying)


def node_array(node) -> tuple[np.ndarray, Grid]:
    """A copy of a volume node's voxels as [i, j, k] and the node's grid."""
    grid = node_grid(node)
    scalars = node.GetImageData().GetPointData().GetScalars()
    if scalars is None or scalars.GetNumberOfComponents() != 1:
        raise ParameterError(f"volume node '{node.GetName()}' is not a single-component scalar volume")
    kji = numpy_support.vtk_to_numpy(scalars).reshape(tuple(reversed(grid.shape)))
    return np.ascontiguousarray(kji.transpose(2, 1, 0)), grid


def add_volume_node(scene, array: np.ndarray, grid: Grid, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node in `scene` holding `array` (in `grid`'s voxel order) with a display node."""
    node = scene.AddNewNodeByClass(class_name, name)
    set_node_array(node, array, grid)
    node.CreateDefaultDisplayNodes()
    return node


def onto_node_grid(array: np.ndarray, grid: Grid, target: Grid, order: int) -> np.ndarray:
    """Bring a volume computed on `grid` into `target`'s voxel order and geometry.

    When `grid` is the canonical (closest-RAS) form of `target`, as for every
    array computed on a `Case`, this is an exact permutation and flip of axes;
    otherwise the volume is resampled in physical space (`order` 0 for labels,
    1 for maps).
    """
    if canonical_grid(target).same_as(grid):
        return from_canonical(array, target)
    if grid.same_as(target):
        return array
    return resample_to_grid(array, grid, target, order=order)


def check_grid(array: np.ndarray, grid: Grid, what: str) -> None:
    if tuple(np.shape(array)) != tuple(grid.shape):
        raise ParameterError(f"{what} has shape {tuple(np.shape(array))} but its grid is {tuple(grid.shape)}")


__all__ = [
    "add_volume_node",
    "affine_from_matrix",
    "check_grid",
    "matrix_from_affine",
    "node_array",
    "node_grid",
    "onto_node_grid",
    "set_node_array",
]
