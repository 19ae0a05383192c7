"""Folding BatchNorm into the convolution before it, for evaluation and inference.

In eval mode ``BN(conv(x)) = conv'(x)`` with ``W' = W * s`` and ``b' = (b - mean) * s + beta``,
``s = gamma / sqrt(var + eps)`` per output channel: the same function with one memory-bound pass
fewer per convolution. A BatchNorm2d (or a SyncBatchNorm, the same function in eval mode) is folded
when it directly takes a Conv2d's output:

* consecutive children of an ``nn.Sequential`` (``ConvBNReLU``, ResNet downsamples, the deep stem,
  SK's branches), a Sequential ending in a convolution counting as that convolution;
* the ``(conv, bn)`` attribute pairs of timm's ``BasicBlock`` / ``Bottleneck`` (and of their subclasses,
  the backbone's blocks) and of modules that declare them in ``conv_bn_pairs`` (the non-local block's
  ``conv_out`` / ``norm``, ...).

The folded model is for evaluation only: its BatchNorms are gone.
"""
from __future__ import annotations

import torch
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

__all__ = ['fold_batchnorm']

_BLOCK_PAIRS = {
    BasicBlock: (('conv1', 'bn1'), ('conv2', 'bn2')),
    Bottleneck: (('conv1', 'bn1'), ('conv2', 'bn2'), ('conv3', 'bn3')),
}


def _block_pairs(module: nn.Module) -> tuple[tuple[str, str], ...]:
    for cls, pairs in _BLOCK_PAIRS.items():
        if isinstance(module, cls):
            return pairs
    return ()


def _last_conv(module: nn.Module) -> nn.Conv2d | None:
    if isinstance(module, nn.Conv2d):
        return module
    if isinstance(module, nn.Sequential) and len(module):
        return _last_conv(module[-1])
    return None


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | nn.SyncBatchNorm) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [C_out]
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))).to(conv.weight.dtype))
    new_bias = (bias - bn.running_mean) * scale + bn.bias
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype))
    else:
        conv.bias.copy_(new_bias)


def _foldable(conv: nn.Module | None, bn: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and type(bn) in (nn.BatchNorm2d, nn.SyncBatchNorm)
            and bn.track_running_stats and bn.affine and bn.num_features == conv.out_channels)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm2d / SyncBatchNorm that directly follows a Conv2d into it, in place; returns how many.

    Raises:
        ValueError: ``model`` is in training mode.
    """
    if model.training:
        raise ValueError('fold_batchnorm is for evaluation: call model.eval() first')
    folded = 0
    for module in list(model.modules()):
        pairs = _block_pairs(module) + tuple(getattr(module, 'conv_bn_pairs', ()))
        for conv_name, bn_name in pairs:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if _foldable(conv, bn):
                _fold(conv, bn)
                setattr(module, bn_name, nn.Identity())
                folded += 1
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv = _last_conv(module[i])
                if _foldable(conv, module[i + 1]):
                    _fold(conv, module[i + 1])
                    module[i + 1] = nn.Identity()
                    folded += 1
    return folded
