"""Splitting a network at a layer: prefix + suffix is the network, bit for bit, for every hookable layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from MedSegLensLib.errors import CompatibilityError, ParameterError
from MedSegLensLib.models import build_network, hookable_layers, tiny_config
from MedSegLensLib.models.split import find_linear_entry, split_network

pytestmark = pytest.mark.one_thread  # tiny networks: one torch thread (conftest.py)


@pytest.mark.parametrize("arch", ["unet", "segformer"])
def test_prefix_then_suffix_is_the_network_at_every_layer(arch):
    torch.manual_seed(0)
    config = tiny_config(arch)
    network = build_network(config).eval()
    x = torch.randn(2, 4, *config.patch_size)
    with torch.no_grad():
        whole = network(x)
        for layer in hookable_layers(network, config.patch_size):
            split = split_network(network, layer.name)
            h, *boundary = split.prefix(x)
            assert tuple(h.shape[1:]) == layer.shape
            assert torch.equal(split.suffix(h, *boundary), whole), layer.name


def test_the_unet_decoder_passes_its_skip_connection_across_the_split():
    config = tiny_config("unet")
    network = build_network(config).eval()
    split = split_network(network, "model.1.submodule.2")
    assert len(split.boundary_names) == 1  # the encoder-0 output concatenated before the head
    entry = find_linear_entry(split, layer_channels=4)
    assert entry is not None and isinstance(entry.conv, nn.ConvTranspose3d)
    assert entry.offset == entry.conv.in_channels - 4  # h comes after the skip in the concatenation


def test_a_linear_head_after_normalisation_is_not_taken_for_a_convolution_entry():
    config = tiny_config("segformer")
    network = build_network(config).eval()
    split = split_network(network, "decoder.fuse_act")
    assert find_linear_entry(split, layer_channels=16) is None


class _SideBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Conv3d(1, 2, 3, padding=1)
        self.unused = nn.Conv3d(1, 2, 3, padding=1)
        self.head = nn.Conv3d(2, 1, 1)

    def forward(self, x):
        self.unused(x)
        return self.head(self.main(x))


def test_layers_that_do_not_feed_the_output_or_do_not_exist_are_refused():
    network = _SideBranch()
    with pytest.raises(CompatibilityError, match="does not feed"):
        split_network(network, "unused")
    with pytest.raises(ParameterError, match="no layer named"):
        split_network(network, "nowhere")
    split = split_network(network, "main")
    x = torch.randn(1, 1, 6, 6, 6)
    with torch.no_grad():
        assert torch.equal(split.suffix(*split.prefix(x)), network(x))
