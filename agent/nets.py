"""Building blocks: LayerNorm + SiLU MLPs, and the CNN encoder/decoder for 64x64 images.

Shape symbols: ``B`` batch (any leading dims), ``C`` channels, ``F`` features.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Sequential):
    """``layers`` x (Linear without bias -> LayerNorm -> SiLU), then an optional output layer.

    ``(..., in_dim) -> (..., out_dim)`` (or ``(..., units)`` when ``out_dim`` is None).
    ``zero_out`` initialises the output layer to zero, as the paper does for the reward and
    critic heads so that early predictions are 0 rather than large random values.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int | None,
        units: int,
        layers: int,
        zero_out: bool = False,
    ):
        modules: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers):
            modules += [nn.Linear(dim, units, bias=False), nn.LayerNorm(units), nn.SiLU()]
            dim = units
        if out_dim is not None:
            head = nn.Linear(dim, out_dim)
            if zero_out:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
            modules.append(head)
        super().__init__(*modules)
        self.out_dim = out_dim if out_dim is not None else dim


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of ``(B, C, H, W)`` feature maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _stages(size: int, minres: int = 4) -> int:
    stages = int(math.log2(size // minres))
    if minres * 2**stages != size:
        raise ValueError(f"image size {size} must be {minres} times a power of two")
    return stages


class ConvEncoder(nn.Module):
    """Stride-2 4x4 convolutions down to 4x4, channels ``depth * 2**i``.

    ``(B, H, W, 3) -> (B, F)``, for pixels already scaled to [-0.5, 0.5].
    """

    def __init__(self, size: int, depth: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for i in range(_stages(size)):
            out = depth * 2**i
            layers += [nn.Conv2d(channels, out, 4, 2, 1, bias=False), ChannelNorm(out), nn.SiLU()]
            channels = out
        self.net = nn.Sequential(*layers)
        self.out_dim = channels * 4 * 4

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        lead = image.shape[:-3]
        x = image.reshape(-1, *image.shape[-3:]).permute(0, 3, 1, 2)
        return self.net(x).reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: features -> 4x4 map -> transposed convs -> image.

    ``(B, F) -> (B, H, W, 3)``, predicting pixels in [-0.5, 0.5] (trained with MSE).
    """

    def __init__(self, in_dim: int, size: int, depth: int):
        super().__init__()
        stages = _stages(size)
        self.top = depth * 2 ** (stages - 1)
        self.project = nn.Linear(in_dim, self.top * 4 * 4)
        layers: list[nn.Module] = []
        channels = self.top
        for i in reversed(range(stages)):
            last = i == 0
            out = 3 if last else depth * 2 ** (i - 1)
            layers.append(nn.ConvTranspose2d(channels, out, 4, 2, 1, bias=last))
            if not last:
                layers += [ChannelNorm(out), nn.SiLU()]
            channels = out
        self.net = nn.Sequential(*layers)
        self.size = size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        lead = features.shape[:-1]
        x = self.project(features).reshape(-1, self.top, 4, 4)
        return self.net(x).permute(0, 2, 3, 1).reshape(*lead, self.size, self.size, 3)
