"""The 2D U-Net of WSL4MIS / EFFDNet (PyMIC lineage), returning logits and decoder features.

Architecture as coded (EFFDNet/WSL4MIS ``networks/unet.py``), ``w`` = ``base_width`` (16 in
the reference):

* encoder levels with ``[w, 2w, 4w, 8w, 16w]`` channels; each level is a ConvBlock
  ``conv3×3(pad 1, bias) → BN → LeakyReLU(0.01) → Dropout(p_level) → conv3×3 → BN →
  LeakyReLU(0.01)`` with ``p = dropout[level]`` (default ``[0.05, 0.1, 0.2, 0.3, 0.5]``);
  levels 1–4 start with ``MaxPool2d(2)``;
* decoder: 2× up-sampling to the skip's channels, concatenation ``[skip, up]``, ConvBlock
  with dropout 0;
* head: ``conv3×3(pad 1)`` to ``num_classes``. EFFDNet's unused 2-class "binary" head is
  left out (1,813,764 parameters for 1 input channel, 4 classes, width 16).

Up-sampling — code, not the write-up: the reference's ``params`` say ``'bilinear': False``
but its ``Decoder`` never passes that flag to ``UpBlock``, whose default is ``bilinear=True``;
so what runs (and what the oracle's 1,814,054 parameters count) is conv1×1 (in → skip
channels) + bilinear ×2 (``align_corners=True``), not ``ConvTranspose2d(k 2, s 2)``
(methods-as-coded §2.3 says the latter; that variant would have 1,944,324 parameters).
Default ``upsample="bilinear"`` (as coded); ``upsample="transpose"`` gives the other one.

Module names equal the reference (``encoder.in_conv.conv_conv.0.weight``,
``decoder.up1.conv1x1.weight``, ``decoder.out_conv.bias`` …), so a WSL4MIS ``unet`` state
dict loads directly (an EFFDNet one after dropping ``decoder.out_conv_binary.*``).

``forward(x)``: ``x`` (B, in_channels, H, W) → ``(logits (B, num_classes, H, W),
features (B, base_width, H, W))``; features = the full-resolution output of the last
decoder block (what EFFDNet's FBSL pools). H and W must be multiples of 16 (four 2×
poolings): otherwise the up-sampled maps cannot match the skips and ``forward`` raises
``ValueError`` (the reference would fail inside ``torch.cat``). The trainer resizes slices
to a multiple of 16 (256² by default).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

ARCHITECTURE = "wsl4mis-unet2d"
UPSAMPLE_MODES = ("bilinear", "transpose")
DEFAULT_DROPOUT = (0.05, 0.1, 0.2, 0.3, 0.5)
LEVELS = 5
DOWNSAMPLE = 2 ** (LEVELS - 1)


class ConvBlock(nn.Module):
    """conv3×3 → BN → LeakyReLU → Dropout(p) → conv3×3 → BN → LeakyReLU (shape-preserving)."""

    def __init__(self, in_channels: int, out_channels: int, dropout_p: float):
        super().__init__()
        self.conv_conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.01),
            nn.Dropout(dropout_p),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.01),
        )

    def forward(self, x):
        return self.conv_conv(x)


class DownBlock(nn.Module):
    """MaxPool2d(2) then ConvBlock (halves H and W)."""

    def __init__(self, in_channels: int, out_channels: int, dropout_p: float):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2),
                                          ConvBlock(in_channels, out_channels, dropout_p))

    def forward(self, x):
        return self.maxpool_conv(x)


class UpBlock(nn.Module):
    """2× up-sampling of ``x1`` to the skip's channels, concat ``[skip, up]``, ConvBlock.

    ``upsample="bilinear"`` (as coded): conv1×1 (in1 → in2) then bilinear ×2 with
    ``align_corners=True``; ``"transpose"``: ConvTranspose2d(in1 → in2, k 2, s 2).
    """

    def __init__(self, in_channels1: int, in_channels2: int, out_channels: int,
                 dropout_p: float = 0.0, upsample: str = "bilinear"):
        super().__init__()
        self.bilinear = upsample == "bilinear"
        if self.bilinear:
            self.conv1x1 = nn.Conv2d(in_channels1, in_channels2, kernel_size=1)
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        else:
            self.up = nn.ConvTranspose2d(in_channels1, in_channels2, kernel_size=2, stride=2)
        self.conv = ConvBlock(in_channels2 * 2, out_channels, dropout_p)

    def forward(self, x1, x2):
        if self.bilinear:
            x1 = self.conv1x1(x1)
        return self.conv(torch.cat([x2, self.up(x1)], dim=1))


class Encoder(nn.Module):
    def __init__(self, in_channels: int, channels: Sequence[int], dropout: Sequence[float]):
        super().__init__()
        self.in_conv = ConvBlock(in_channels, channels[0], dropout[0])
        self.down1 = DownBlock(channels[0], channels[1], dropout[1])
        self.down2 = DownBlock(channels[1], channels[2], dropout[2])
        self.down3 = DownBlock(channels[2], channels[3], dropout[3])
        self.down4 = DownBlock(channels[3], channels[4], dropout[4])

    def forward(self, x):
        x0 = self.in_conv(x)
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        x3 = self.down3(x2)
        x4 = self.down4(x3)
        return [x0, x1, x2, x3, x4]


class Decoder(nn.Module):
    def __init__(self, channels: Sequence[int], num_classes: int, upsample: str = "bilinear"):
        super().__init__()
        self.up1 = UpBlock(channels[4], channels[3], channels[3], 0.0, upsample)
        self.up2 = UpBlock(channels[3], channels[2], channels[2], 0.0, upsample)
        self.up3 = UpBlock(channels[2], channels[1], channels[1], 0.0, upsample)
        self.up4 = UpBlock(channels[1], channels[0], channels[0], 0.0, upsample)
        self.out_conv = nn.Conv2d(channels[0], num_classes, kernel_size=3, padding=1)

    def forward(self, feats):
        x0, x1, x2, x3, x4 = feats
        x = self.up1(x4, x3)
        x = self.up2(x, x2)
        x = self.up3(x, x1)
        f = self.up4(x, x0)
        return self.out_conv(f), f


class UNet2D(nn.Module):
    """WSL4MIS/EFFDNet 2D U-Net; ``forward(x) -> (logits, features)`` (see module docstring).

    ``config`` (a plain dict, JSON-serialisable) describes the architecture; rebuild the same
    network with :func:`build_network` and compare configs to refuse foreign checkpoints.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 4, base_width: int = 16,
                 dropout: Sequence[float] = DEFAULT_DROPOUT, upsample: str = "bilinear"):
        super().__init__()
        dropout = tuple(float(p) for p in dropout)
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if len(dropout) != LEVELS:
            raise ValueError(f"dropout needs {LEVELS} values (one per level), got {dropout}")
        if min(in_channels, num_classes, base_width) < 1:
            raise ValueError("in_channels, num_classes and base_width must be ≥ 1")
        channels = [base_width * 2 ** i for i in range(LEVELS)]
        self.config = {"architecture": ARCHITECTURE, "in_channels": int(in_channels),
                       "num_classes": int(num_classes), "base_width": int(base_width),
                       "dropout": list(dropout), "upsample": upsample}
        self.feature_channels = base_width
        self.encoder = Encoder(in_channels, channels, dropout)
        self.decoder = Decoder(channels, num_classes, upsample)

    def forward(self, x):
        h, w = x.shape[-2:]
        if h % DOWNSAMPLE or w % DOWNSAMPLE:
            raise ValueError(f"U-Net input H×W must be multiples of {DOWNSAMPLE}, got {h}×{w}; "
                             "resize (the trainer does) or pad first")
        return self.decoder(self.encoder(x))


def default_config(**overrides: Any) -> dict:
    """The reference architecture's config (1 → 4 classes, width 16) with ``overrides``."""
    config = {"architecture": ARCHITECTURE, "in_channels": 1, "num_classes": 4,
              "base_width": 16, "dropout": list(DEFAULT_DROPOUT), "upsample": "bilinear"}
    unknown = set(overrides) - set(config)
    if unknown:
        raise ValueError(f"unknown U-Net config keys {sorted(unknown)}")
    config.update(overrides)
    return config


def build_network(config: dict) -> UNet2D:
    """Build the network a config describes; ``ValueError`` for another architecture or keys."""
    config = dict(config)
    arch = config.pop("architecture", ARCHITECTURE)
    if arch != ARCHITECTURE:
        raise ValueError(f"unsupported architecture {arch!r} (this build knows {ARCHITECTURE!r})")
    allowed = {"in_channels", "num_classes", "base_width", "dropout", "upsample"}
    unknown = set(config) - allowed
    if unknown:
        raise ValueError(f"unknown U-Net config keys {sorted(unknown)}")
    return UNet2D(**config)


def count_parameters(net: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``net``."""
    return sum(p.numel() for p in net.parameters())
