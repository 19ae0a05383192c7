"""Small building blocks shared by the heads."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seg.models.norm import build_norm


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) -> norm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 norm: str = 'BN') -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                      bias=False),
            build_norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class Classifier(nn.Sequential):
    """Dropout2d -> 1x1 conv to the class logits (mmseg's ``conv_seg``)."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        super().__init__(nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
                         nn.Conv2d(channels, num_classes, 1))
        nn.init.normal_(self[1].weight, 0, 0.01)
        nn.init.zeros_(self[1].bias)


def tracing() -> bool:
    """Inside a tracer (FX for int8, TorchScript, dynamo / export for torch.compile and ONNX): the memory-lean
    inference paths give way to the plain graph, whose shapes trace."""
    return torch.fx._symbolic_trace.is_fx_symbolic_tracing() or torch.jit.is_tracing() or \
        torch.compiler.is_compiling()


def hooked(*modules: nn.Module) -> bool:
    """Whether a forward (pre-)hook watches any of ``modules``: the memory-lean paths then run the modules as
    they are, so that the hooks see what they would see without those paths."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def memory_format_of(x: Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a 4-d tensor laid out so (and not also contiguous), else contiguous."""
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format


LEAN_BAND_BYTES = 16 * 2 ** 20
"""The most bytes of output a banded convolution (:func:`conv_add_by_rows_`) computes at a time."""


def band_rows(rows: int, bytes_per_row: int, limit: int) -> int:
    """Rows per band of a map of ``rows`` rows so that a band holds at most ``limit`` bytes (at least 1)."""
    return max(1, min(rows, limit // max(bytes_per_row, 1)))


def input_rows(r0: int, r1: int, kernel_rows: int, padding: int, dilation: int) -> tuple[int, int]:
    """The input rows ``[a0, a1)`` that output rows ``[r0, r1)`` of a stride-1 convolution read (before
    clipping to the image: rows outside it are the padding)."""
    return r0 - padding, r1 - padding + dilation * (kernel_rows - 1)


def conv2d_rows(x: Tensor, weight: Tensor, padding: tuple[int, int], dilation: tuple[int, int], r0: int,
                r1: int, bias: Tensor | None = None) -> Tensor:
    """Output rows ``[r0, r1)`` of ``F.conv2d(x, weight, bias, 1, padding, dilation)`` (stride 1, zero
    padding), from the rows of ``x`` they read (:func:`input_rows`): the kernel's dilated halo, zero rows
    beyond ``x``'s own borders as its padding. The reference is the whole convolution, sliced."""
    a0, a1 = input_rows(r0, r1, weight.shape[-2], padding[0], dilation[0])
    c0, c1 = max(0, a0), min(x.shape[-2], a1)
    t = x[..., c0:c1, :]
    if (c0, c1) != (a0, a1):
        t = F.pad(t, (0, 0, c0 - a0, a1 - c1))
    return F.conv2d(t, weight, bias, 1, (0, padding[1]), dilation)


def conv_add_by_rows_(out: Tensor, x: Tensor, weight: Tensor, padding: tuple[int, int],
                      dilation: tuple[int, int]) -> Tensor:
    """``out += F.conv2d(x, weight, None, 1, padding, dilation)``, by bands of output rows of at most
    :data:`LEAN_BAND_BYTES`: the convolution's whole output is never held beside ``out``. No autograd."""
    rows = out.shape[-2]
    step = band_rows(rows, out[..., :1, :].numel() * out.element_size(), LEAN_BAND_BYTES)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        out[..., r0:r1, :] += conv2d_rows(x, weight, padding, dilation, r0, r1)
    return out


def conv_of_concat(block: nn.Sequential, parts: Sequence[Tensor]) -> Tensor:
    """``block(torch.cat(parts, dim=1))`` for a ``block`` that starts with a ``Conv2d``.

    Without autograd, outside tracers and in float32, the convolution of the concatenation is computed as
    the sum of each part's convolution with its slice of the weights (the same sum, in another order), so
    the concatenation -- the widest map of most heads, 2560 channels of 128x256 (320 MiB) for a 1024x2048
    image -- is never held; the parts after the first are added into the output by row bands
    (:func:`conv_add_by_rows_`, for a stride-1 convolution), so no second output-sized map is held either.
    Otherwise (training, tracing, bf16 / fp16, whose partial sums would be rounded
    once more), or where a hook watches the block or its convolution, it is concatenated.
    """
    conv = block[0]
    if torch.is_grad_enabled() or tracing() or not isinstance(conv, nn.Conv2d) or conv.groups != 1 \
            or conv.padding_mode != 'zeros' or any(p.dtype != torch.float32 for p in parts) \
            or hooked(block, conv):
        return block(torch.cat(list(parts), dim=1))
    banded = conv.stride == (1, 1) and isinstance(conv.padding, tuple)
    out, start = None, 0
    for part in parts:
        width = part.shape[1]
        weight = conv.weight[:, start:start + width]
        start += width
        if out is None:
            out = F.conv2d(part, weight, None, conv.stride, conv.padding, conv.dilation)
        elif banded:
            conv_add_by_rows_(out, part, weight, conv.padding, conv.dilation)
        else:
            out.add_(F.conv2d(part, weight, None, conv.stride, conv.padding, conv.dilation))
    if start != conv.in_channels:
        raise ValueError(f'conv_of_concat: the parts have {start} channels in all, the convolution takes '
                         f'{conv.in_channels}')
    if conv.bias is not None:
        out.add_(conv.bias.view(1, -1, 1, 1))
    for module in list(block)[1:]:
        out = module(out)
    return out
