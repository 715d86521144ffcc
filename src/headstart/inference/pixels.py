"""Whole images in: the model's crop computed inside a graph, so that an export takes decoded RGB
pixels of any size and gives headstart's probabilities.

`CentreCrop` takes uint8 pixels (1, H, W, 3) and returns the uint8 crop (1, S, S, 3) that
`Preprocessing.crop` makes with Pillow: the same box (`Preprocessing.crop_box`, the one definition
of the geometry) and Pillow's own resampling, written out. Pillow resizes with a filter widened by
the scale when it shrinks (antialiasing: a 4000 px photo averages every pixel, it does not skip
them), horizontally first, rounding to uint8 between the passes; so does this. It uses standard
operators only (Gather, Range, ReduceSum...), with the height and width dynamic: onnxruntime,
OpenVINO and OpenCV's DNN run it.

Pillow's 22-bit fixed-point weights against float32 here, and Pillow 13's own choice of which pass
goes first (it runs some portrait images vertically first), leave small differences: on 163 real
photos at most 2 grey levels with bilinear and, with bicubic (whose negative lobes make the pass
order matter where an edge clips), up to 8 on a few pixels (tests/test_pixels.py keeps the bounds).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..preprocessing import Preprocessing


def _bilinear(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(1 - torch.abs(x))


def _bicubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:  # Pillow's cubic (a = -0.5)
    x = torch.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


FILTERS = {"bilinear": (_bilinear, 1.0), "bicubic": (_bicubic, 2.0)}  # Pillow's filters and their support


def resampling_taps(
    length: torch.Tensor, start: torch.Tensor, side: torch.Tensor, size: int, interpolation: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which input pixels each of `size` outputs reads, and with what weights, when [start, start +
    side) of an axis of `length` pixels is resized to `size` (Pillow's `precompute_coeffs`).

    Returns (index (size, K), weight (size, K)); K covers the widest window, and taps outside the
    image weigh nothing.
    """
    kernel, support = FILTERS[interpolation]
    scale = side / size
    widen = torch.clamp(scale, min=1.0)  # shrinking: the filter spans `scale` input pixels
    centre = start + (torch.arange(size, dtype=torch.float32) + 0.5) * scale  # (size,)
    first = torch.floor(centre - support * widen + 0.5)
    taps = torch.ceil(support * widen).to(torch.int64) * 2 + 1
    index = first[:, None] + torch.arange(taps).to(torch.float32)[None, :]  # (size, K)
    weight = kernel((index + 0.5 - centre[:, None]) / widen)
    weight = weight * ((index >= 0) & (index < length)).to(torch.float32)
    weight = weight / weight.sum(1, keepdim=True)
    index = torch.clamp(index, torch.zeros_like(length), length - 1).to(torch.int64)
    return index, weight


class CentreCrop(nn.Module):
    """uint8 RGB pixels (1, H, W, 3) of any size -> the model's uint8 crop (1, S, S, 3), computed
    as `Preprocessing.crop` computes it with Pillow."""

    def __init__(self, preprocessing: Preprocessing):
        super().__init__()
        self.preprocessing = preprocessing

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """One image's pixels -> its crop."""
        size, interpolation = self.preprocessing.image_size, self.preprocessing.interpolation
        shape = torch._shape_as_tensor(pixels).to(torch.float32)  # a traced shape: H and W stay dynamic
        height, width = shape[1], shape[2]
        left, top, side = self.preprocessing.crop_box(width, height)  # the one definition of the box
        image = pixels[0].to(torch.float32).permute(2, 0, 1)  # (3, H, W)

        index, weight = resampling_taps(width, left, side, size, interpolation)
        rows = image[:, :, index.reshape(-1)].reshape(3, -1, size, index.shape[1])  # (3, H, S, K)
        image = torch.clamp(torch.floor((rows * weight).sum(-1) + 0.5), 0, 255)  # Pillow rounds between passes

        index, weight = resampling_taps(height, top, side, size, interpolation)
        columns = image[:, index.reshape(-1), :].reshape(3, size, index.shape[1], size)  # (3, S, K, S)
        image = torch.clamp(torch.floor((columns * weight[None, :, :, None]).sum(2) + 0.5), 0, 255)
        return image.permute(1, 2, 0)[None].to(torch.uint8)


def export_centre_crop(preprocessing: Preprocessing, path: Path, output_name: str = "crop") -> None:
    """`CentreCrop` as an ONNX file (opset 17): `pixels` (1, H, W, 3) in, H and W dynamic."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            CentreCrop(preprocessing).eval(),
            (torch.zeros(1, 300, 400, 3, dtype=torch.uint8),),
            str(path),
            input_names=["pixels"],
            output_names=[output_name],
            dynamic_axes={"pixels": {1: "height", 2: "width"}},
            opset_version=17,
            dynamo=False,
        )
