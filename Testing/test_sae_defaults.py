"""The default SAE layers (`sae/defaults.py`): hookable in their architecture, and steerable exactly where promised."""

from __future__ import annotations

import pytest
import torch

from MedSegLensLib.models import SegmentationModel, build_network, hookable_layers, tiny_config
from MedSegLensLib.models.split import split_network
from MedSegLensLib.sae.defaults import DEFAULTS, default_for
from MedSegLensLib.steering.reach import has_global_operation


def tiny_model(arch: str) -> SegmentationModel:
    torch.manual_seed(0)
    config = tiny_config(arch)
    return SegmentationModel(build_network(config), config, f"tiny-{arch}", device="cpu")


@pytest.mark.parametrize("arch", sorted(DEFAULTS))
def test_each_default_is_a_hookable_layer_with_the_role_medseglens_layers_gives_it(arch):
    model = tiny_model(arch)
    default = default_for(model)
    roles = {layer.name: layer.role for layer in hookable_layers(model)}
    assert default.layer in roles and default.role.startswith(roles[default.layer])
    assert 0 < default.k < default.n_latents


def test_the_segformer_default_feeds_no_instance_norm_so_a_steering_edit_updates_locally():
    network = tiny_model("segformer").network
    assert not has_global_operation(split_network(network, DEFAULTS["segformer"].layer).suffix)
    # the check discriminates: encoder stage 4 feeds the decoder's instance norm
    assert has_global_operation(split_network(network, "stages.3").suffix)
