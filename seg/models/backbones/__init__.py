"""Backbones: ``forward(x) -> list[Tensor]`` (one per stage), ``out_channels`` and ``strides`` attributes."""
from .resnet import DilatedResNet

__all__ = ['DilatedResNet']
