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


def conv_of_concat(block: nn.Sequential, parts: Sequence[Tensor]) -> Tensor:
    """``block(torch.cat(parts, dim=1))`` for a ``block`` that starts with a ``Conv2d``.

    Without autograd, outside tracers and in float32, the convolution of the concatenation is computed as
    the sum of each part's convolution with its slice of the weights (the same sum, in another order), so
    the concatenation -- the widest map of most heads, 2560 channels of 128x256 (320 MiB) for a 1024x2048
    image -- is never held. Otherwise (training, tracing, bf16 / fp16, whose partial sums would be rounded
    once more), or where a hook watches the block or its convolution, it is concatenated.
    """
    conv = block[0]
    if torch.is_grad_enabled() or tracing() or not isinstance(conv, nn.Conv2d) or conv.groups != 1 \
            or conv.padding_mode != 'zeros' or any(p.dtype != torch.float32 for p in parts) \
            or hooked(block, conv):
        return block(torch.cat(list(parts), dim=1))
    out, start = None, 0
    for part in parts:
        width = part.shape[1]
        y = F.conv2d(part, conv.weight[:, start:start + width], None, conv.stride, conv.padding, conv.dilation)
        start += width
        out = y if out is None else out.add_(y)
    if start != conv.in_channels:
        raise ValueError(f'conv_of_concat: the parts have {start} channels in all, the convolution takes '
                         f'{conv.in_channels}')
    if conv.bias is not None:
        out.add_(conv.bias.view(1, -1, 1, 1))
    for module in list(block)[1:]:
        out = module(out)
    return out
