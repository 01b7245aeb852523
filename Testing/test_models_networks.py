"""Networks from configs: the U-Net, the 3D SegFormer, any MONAI network; fx tracing; layer listing."""

from __future__ import annotations

import json

import pytest
import torch
import torch.fx
from models_support import one_thread  # noqa: F401 (fixtures)

from MedSegLensLib.errors import ParameterError
from MedSegLensLib.models import ModelConfig, build_network, default_config, hookable_layers, tiny_config
from MedSegLensLib.models.segformer import SegFormer3D


@pytest.mark.parametrize("arch", ["unet", "segformer"])
def test_config_json_round_trip(arch):
    config = default_config(arch, spacing=(3.0, 3.0, 3.0))
    again = ModelConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again == config
    assert again.in_channels == 4 and again.out_channels == 4
    assert again.modalities == ("t1n", "t1c", "t2w", "t2f")
    assert again.label_values == (0, 1, 2, 3)


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"architecture": "resnet"}, "architecture 'resnet' is unknown"),
        ({"modalities": ["t1n", "t1n", "t2w", "t2f"]}, "modalities"),
        ({"labels": [{"value": 1, "name": "NCR"}, {"value": 2, "name": "ED"}]}, "labels"),
        ({"patch_size": [16, 16]}, "patch_size"),
        ({"colour": "red"}, "unknown key(s) colour"),
    ],
)
def test_bad_configs_are_refused_with_one_line(change, fragment):
    data = {**tiny_config("unet").to_json(), **change}
    with pytest.raises(ParameterError) as info:
        ModelConfig.from_json(data)
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("arch", ["unet", "segformer"])
def test_networks_map_four_modalities_to_four_classes_and_trace_with_fx(arch):
    config = tiny_config(arch)
    network = build_network(config).eval()
    x = torch.randn(2, 4, *config.patch_size)
    with torch.no_grad():
        out = network(x)
        traced = torch.fx.symbolic_trace(network)
        assert torch.equal(traced(x), out)
    assert out.shape == (2, 4, *config.patch_size)


def test_segformer_keeps_the_design_elements():
    network = build_network(tiny_config("segformer"))
    assert isinstance(network, SegFormer3D) and len(network.stages) == 4
    embeds = [stage.embed.proj for stage in network.stages]
    assert all(conv.kernel_size[0] > conv.stride[0] for conv in embeds), "patch embeddings must overlap"
    first_block = network.stages[0].blocks[0]
    assert first_block.attn.reduce is not None and first_block.attn.reduce.stride[0] > 1, "spatial-reduction attention"
    dw = first_block.ffn.dwconv
    assert dw.groups == dw.in_channels and dw.kernel_size == (3, 3, 3), "Mix-FFN depthwise 3D conv"
    assert len(network.decoder.project) == 4, "the decoder fuses four scales"


def test_any_monai_network_can_be_named():
    config = ModelConfig(architecture="monai:SegResNet", hyper_parameters={"init_filters": 8}, patch_size=(16, 16, 16))
    network = build_network(config)
    assert type(network).__name__ == "SegResNet"
    assert network(torch.randn(1, 4, 16, 16, 16)).shape == (1, 4, 16, 16, 16)
    with pytest.raises(ParameterError, match="MONAI has no network named 'NoSuchNet'"):
        build_network(ModelConfig(architecture="monai:NoSuchNet"))
    with pytest.raises(ParameterError, match="hyper-parameters rejected"):
        build_network(ModelConfig(architecture="unet", hyper_parameters={"channels": [4, 8], "bogus": 1}))


@pytest.mark.parametrize(
    "arch, all_layers", [("unet", False), ("segformer", False), ("unet", True), ("segformer", True)]
)
def test_listed_layer_shapes_match_a_real_forward_pass(arch, all_layers):
    config = tiny_config(arch, patch_size=(16, 32, 16))
    network = build_network(config).eval()
    layers = hookable_layers(network, config.patch_size, all_layers=all_layers)
    assert layers and all(len(layer.shape) == 4 for layer in layers)
    seen = {}

    def record(name):
        def hook(_module, _inputs, output):
            seen.setdefault(name, tuple(output.shape))

        return hook

    modules = dict(network.named_modules())
    handles = [modules[layer.name].register_forward_hook(record(layer.name)) for layer in layers]
    with torch.no_grad():
        network(torch.randn(3, 4, 16, 32, 16))
    for handle in handles:
        handle.remove()
    for layer in layers:
        assert seen[layer.name] == (3, *layer.shape)
        assert layer.channels == layer.shape[0]
        assert tuple(p // s for p, s in zip((16, 32, 16), layer.stride)) == layer.shape[1:]
    if not all_layers:
        roles = [layer.role for layer in layers]
        assert roles[-1] == "head (logits)" and layers[-1].shape == (4, 16, 32, 16)
        assert any("encoder" in r for r in roles) and any(("decoder" in r) for r in roles)
