"""CPU 3D convolutions routed to oneDNN: same results to float rounding, the oneDNN kernel really runs,
training and imported models untouched, and networks still split for steering."""

from __future__ import annotations

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from MedSegLensLib.models import SegmentationModel, build_network, tiny_config
from MedSegLensLib.models.cpu_convolution import OneDNNConv3d, route_conv3d_to_onednn
from MedSegLensLib.models.external.imported_model import ImportedModel
from MedSegLensLib.models.split import split_network


def kernels_run(module: nn.Module, x: torch.Tensor) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        module(x)
    return {event.key for event in prof.key_averages()}


def small_conv() -> tuple[nn.Conv3d, torch.Tensor]:
    """A shape PyTorch sends to its native kernel: batch x channels x depth x height = 4 x 32 x 32 <= 20480."""
    torch.manual_seed(0)
    return nn.Conv3d(4, 4, 3, padding=1), torch.randn(1, 4, 32, 32, 32)


def test_routed_convolution_runs_onednn_with_the_same_result():
    conv, x = small_conv()
    with torch.no_grad():
        expected = conv(x)
        route_conv3d_to_onednn(conv)
        assert isinstance(conv, OneDNNConv3d)
        assert "aten::mkldnn_convolution" in kernels_run(conv, x)
        torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


def test_training_keeps_pytorchs_kernel_and_gradients():
    conv, x = small_conv()
    reference = nn.Conv3d(4, 4, 3, padding=1)
    reference.load_state_dict(conv.state_dict())
    route_conv3d_to_onednn(conv)
    assert set(conv.state_dict()) == set(reference.state_dict())
    conv(x).square().sum().backward()
    reference(x).square().sum().backward()
    assert "aten::mkldnn_convolution" not in kernels_run(conv, x)
    torch.testing.assert_close(conv.weight.grad, reference.weight.grad)


def test_models_route_their_convolutions_but_imported_models_do_not():
    config = tiny_config("unet")
    model = SegmentationModel(build_network(config), config, "fingerprint", device="cpu")
    convolutions = [m for m in model.network.modules() if isinstance(m, nn.Conv3d)]
    assert convolutions and all(isinstance(m, OneDNNConv3d) for m in convolutions)
    assert ImportedModel.source_kernels and not SegmentationModel.source_kernels


def test_a_routed_network_still_splits_at_a_layer_and_gives_the_same_output():
    config = tiny_config("unet")
    network = build_network(config).eval()
    x = torch.randn(1, len(config.modalities), *config.patch_size)
    with torch.no_grad():
        expected = network(x)
        route_conv3d_to_onednn(network)
        layer = next(name for name, m in network.named_modules() if isinstance(m, OneDNNConv3d))
        split = split_network(network, layer)
        h, *boundary = split.prefix(x)
        torch.testing.assert_close(split.suffix(h, *boundary), expected, rtol=1e-4, atol=1e-5)
