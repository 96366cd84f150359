"""The WSL4MIS/EFFDNet 2D U-Net: parameter count vs the reference, shapes, configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_weakseg.nets.unet import (ARCHITECTURE, UNet2D, build_network, count_parameters,
                                      default_config)


def test_parameter_count_matches_reference_without_binary_head(oracle):
    arch = oracle("effdnet_unet_arch")
    expected = int(arch["n_params_total"]) - int(arch["n_params_unused_binary_head"])
    assert expected == 1_813_764
    assert count_parameters(UNet2D(in_channels=1, num_classes=4, base_width=16)) == expected


@pytest.mark.parametrize("width", [4, 8, 16])
def test_transpose_variant_differs_by_the_upsampling_weights(width):
    # conv1×1 (in·out + out) vs ConvTranspose k2 (4·in·out + out): 3·in·out more per level.
    chans = [width * 2 ** i for i in range(5)]
    extra = sum(3 * chans[i + 1] * chans[i] for i in range(4))
    bilinear = count_parameters(UNet2D(1, 4, width, upsample="bilinear"))
    transpose = count_parameters(UNet2D(1, 4, width, upsample="transpose"))
    assert transpose - bilinear == extra


@pytest.mark.parametrize("in_ch,classes,width,b,h,w", [
    (1, 4, 4, 2, 32, 32),
    (2, 3, 8, 1, 48, 64),
    (1, 2, 4, 3, 16, 80),
])
@pytest.mark.parametrize("upsample", ["bilinear", "transpose"])
def test_output_shapes(in_ch, classes, width, b, h, w, upsample):
    torch.manual_seed(0)
    net = UNet2D(in_ch, classes, width, upsample=upsample).eval()
    with torch.no_grad():
        logits, features = net(torch.rand(b, in_ch, h, w))
    assert logits.shape == (b, classes, h, w)
    assert features.shape == (b, width, h, w)
    assert net.feature_channels == width


@pytest.mark.parametrize("h,w", [(33, 32), (32, 40), (8, 16)])
def test_sizes_not_multiple_of_16_are_refused(h, w):
    net = UNet2D(1, 4, 4).eval()
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.zeros(1, 1, h, w))


def test_layers_follow_the_reference():
    net = UNet2D(1, 4, 16)
    enc_dropout = [m.p for m in net.encoder.modules() if isinstance(m, nn.Dropout)]
    dec_dropout = [m.p for m in net.decoder.modules() if isinstance(m, nn.Dropout)]
    assert enc_dropout == [0.05, 0.1, 0.2, 0.3, 0.5]
    assert dec_dropout == [0.0] * 4
    slopes = {m.negative_slope for m in net.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.01}
    assert net.decoder.out_conv.kernel_size == (3, 3)
    assert net.decoder.out_conv.padding == (1, 1)
    ups = [m for m in net.decoder.modules() if isinstance(m, nn.Upsample)]
    assert len(ups) == 4 and all(u.align_corners and u.mode == "bilinear" for u in ups)
    keys = set(net.state_dict())
    # Reference module names (a WSL4MIS state dict loads directly).
    for key in ("encoder.in_conv.conv_conv.0.weight",
                "encoder.down4.maxpool_conv.1.conv_conv.4.bias", "decoder.up1.conv1x1.weight", "decoder.up4.conv.conv_conv.1.running_mean",
                "decoder.out_conv.weight"):
        assert key in keys


@pytest.mark.parametrize("overrides", [{}, {"base_width": 4, "num_classes": 3},
                                       {"dropout": [0.0] * 5, "upsample": "transpose"}])
def test_build_network_round_trips_config(overrides):
    config = default_config(**overrides)
    net = build_network(config)
    assert net.config == config
    again = build_network(net.config)
    assert {k: v.shape for k, v in again.state_dict().items()} == \
        {k: v.shape for k, v in net.state_dict().items()}


@pytest.mark.parametrize("config,match", [
    ({"architecture": "resnet-unet"}, "unsupported architecture"),
    ({"architecture": ARCHITECTURE, "depth": 4}, "unknown U-Net config keys"),
    ({"dropout": [0.1, 0.2]}, "dropout needs 5"),
    ({"upsample": "nearest"}, "upsample must be"),
])
def test_build_network_refuses_other_architectures(config, match):
    with pytest.raises(ValueError, match=match):
        build_network(config)
