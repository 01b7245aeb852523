"""Activation capture: hooked layer maps over whole cases, their grids, and resampling to the case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_support import one_thread  # noqa: F401 (fixture)
from torch import nn
from worker_cases import write_case

from MedSegLensLib.data import Case, Grid, read_case
from MedSegLensLib.errors import ParameterError
from MedSegLensLib.models import SegmentationModel, build_network, hookable_layers, tiny_config
from MedSegLensLib.sae.capture import find_layer, layer_features


def tiny_model(arch: str, **overrides) -> SegmentationModel:
    torch.manual_seed(0)
    config = tiny_config(arch, **overrides)
    return SegmentationModel(build_network(config), config, f"tiny-{arch}", device="cpu")


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Case:
    """20 x 24 x 16 voxels (2, 2, 2.5 mm), first axis flipped on disk: several overlapping 16^3 windows."""
    return read_case(write_case(tmp_path_factory.mktemp("capture"), np.random.default_rng(0), with_labels=True))


def output_of(network: nn.Module, layer: str, tensor: torch.Tensor) -> torch.Tensor:
    """The named module's output in one plain forward pass (an independent hook)."""
    seen = []
    handle = dict(network.named_modules())[layer].register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        network(tensor)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("arch", ["unet", "segformer"])
def test_single_window_map_is_exactly_the_layer_output_of_a_forward(arch, case):
    model = tiny_model(arch)
    crop = Case("crop", case.image[:, :16, :16, :16].copy(), Grid((16, 16, 16), case.grid.affine), case.source_grid)
    prepared = model.prepare(crop)
    for info in hookable_layers(model):
        fmap = layer_features(model, prepared, info.name)
        expected = output_of(model.network, info.name, prepared.tensor)[0]
        assert fmap.features.shape == expected.shape == (info.channels, *info.shape[1:])
        torch.testing.assert_close(fmap.features, expected, rtol=1e-5, atol=1e-6)
        assert fmap.stride == tuple(float(s) for s in info.stride)


@pytest.mark.parametrize("arch", ["unet", "segformer"])
def test_same_pass_as_model_logits_and_head_layer_stitches_to_the_logits(arch, case):
    model = tiny_model(arch)
    prepared = model.prepare(case)
    head = hookable_layers(model)[-1].name  # the logits layer (stride 1)
    fmap = layer_features(model, prepared, head)
    reference = model.logits(prepared)
    assert torch.equal(fmap.logits, reference)  # the very windows and blending of model.logits
    torch.testing.assert_close(fmap.features, reference[0], rtol=1e-4, atol=1e-5)
    assert fmap.grid.same_as(prepared.grid)


class _Subsample(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        s = self.stride
        return x[:, :, ::s, ::s, ::s]


class _RampProbe(nn.Module):
    """Logits = the input; the hooked layer samples the input at model voxels s*j of each window."""

    def __init__(self, stride: int):
        super().__init__()
        self.down = _Subsample(stride)

    def forward(self, x):
        self.down(x)
        return x


def test_windows_at_fractional_layer_offsets_land_on_the_global_lattice():
    stride, shape = 8, (40, 36, 28)  # 16^3 windows every 12 voxels: offsets of 1.5 and 2.5 layer voxels
    axes = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    grid = Grid(shape, affine)
    ramp = Case("ramp", np.stack([*axes, np.ones(shape, np.float32)]), grid, grid)
    config = tiny_config(
        "unet",
        patch_size=(16, 16, 16),
        normalisation="none",
        sliding_window={"overlap": 0.25, "mode": "gaussian", "batch_size": 3},
    )
    model = SegmentationModel(_RampProbe(stride), config, "probe", device="cpu")
    fmap = layer_features(model, ramp, "down")
    assert fmap.shape == (5, 5, 4) and fmap.stride == (8.0, 8.0, 8.0)
    for axis in range(3):
        g = np.arange(fmap.shape[axis])
        # the model voxel where the network sampled layer voxel g (the last window's last voxel at the far edge)
        expected = np.minimum(stride * g, shape[axis] - stride).astype(np.float32)
        index = [0, 0, 0]
        index[axis] = slice(None)
        np.testing.assert_allclose(fmap.features[axis][tuple(index)].numpy(), expected, atol=1e-4)
    # the layer grid puts voxel g at the world position of model voxel s*g
    g = np.array([2, 3, 1, 1.0])
    np.testing.assert_allclose(fmap.grid.affine @ g, affine @ np.r_[stride * g[:3], 1.0])


def test_layer_grid_convention_matches_the_receptive_field_of_the_unet():
    """Layer voxel j of stride s is centred on model voxel s*j (strided 'same' convolutions), not s*j + (s-1)/2."""
    torch.manual_seed(0)
    config = tiny_config("unet", patch_size=(32, 32, 32))
    network = build_network(config).eval()
    for info in hookable_layers(network, patch_size=config.patch_size):
        if max(info.stride) == 1:
            continue
        x = torch.randn(1, 4, 32, 32, 32, requires_grad=True)
        out = output_of_with_grad(network, info.name, x)
        j = tuple(n // 2 for n in out.shape[2:])
        out[(0, slice(None), *j)].pow(2).sum().backward()
        sensitivity = x.grad.abs().sum((0, 1))
        weights = sensitivity / sensitivity.sum()
        for axis in range(3):
            profile = weights.sum(tuple(a for a in range(3) if a != axis))
            centre = float((profile * torch.arange(32)).sum())
            s = info.stride[axis]
            assert abs(centre - s * j[axis]) < 0.75, (info.name, axis, centre)
            assert abs(centre - s * j[axis]) < abs(centre - (s * j[axis] + (s - 1) / 2))


def output_of_with_grad(network: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = dict(network.named_modules())[layer].register_forward_hook(lambda _m, _i, out: seen.append(out))
    network(x)
    handle.remove()
    return seen[0]


def test_hot_layer_voxel_resamples_to_its_ras_point_on_the_case_grid(case):
    # the model works at 2 mm isotropic, the case has 2.5 mm slices: the layer grid differs from both
    model = tiny_model("unet", spacing=(2.0, 2.0, 2.0))
    fmap = layer_features(model, case, "model.1.submodule.0")
    assert not fmap.model_grid.same_as(case.grid)
    hot = np.zeros(fmap.shape, np.float32)
    voxel = (2, 3, 2)
    hot[voxel] = 1.0
    on_case = fmap.to_case_grid(hot)
    assert on_case.shape == case.grid.shape
    peak = np.unravel_index(np.argmax(on_case), on_case.shape)
    ras_peak = case.grid.affine @ np.r_[peak, 1.0]
    ras_hot = fmap.grid.affine @ np.r_[voxel, 1.0]
    assert np.all(np.abs(ras_peak - ras_hot)[:3] <= np.asarray(case.grid.spacing) / 2 + 1e-6)
    # and reading the case at layer voxels finds the case voxel under the hot voxel
    marker = np.zeros(case.grid.shape, np.uint8)
    marker[peak] = 7
    assert fmap.values_at_layer(marker)[voxel] == 7


def test_unknown_or_non_spatial_layer_is_refused_with_the_hookable_names(case):
    model = tiny_model("unet")
    with pytest.raises(ParameterError, match="model.1.submodule.0"):
        layer_features(model, case, "encoder.99")
    with pytest.raises(ParameterError):
        find_layer(model.network, "")
