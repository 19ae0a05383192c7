"""Dilated ResNet backbones (output stride 8 or 16), built on timm's ResNet.

Deep Residual Learning for Image Recognition (He et al., CVPR 2016), https://arxiv.org/abs/1512.03385;
dilation as in DeepLab / "Dilated Residual Networks" (Yu et al., CVPR 2017), https://arxiv.org/abs/1705.09914;
the deep stem is ResNet-C of "Bag of Tricks" (He et al., CVPR 2019), https://arxiv.org/abs/1812.01187,
i.e. mmsegmentation's ResNetV1c.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection

import torch
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import Tensor, nn

from seg.models.convert import is_mmcv_resnet_layout, mmcv_backbone
from seg.models.layers import (
    LEAN_BAND_BYTES,
    band_rows,
    conv2d_rows,
    hooked,
    input_rows,
    memory_format_of,
    tracing,
)
from seg.models.norm import match_norm
from seg.models.weights import open_mmlab_file, read_weights_file, state_dict_of
from seg.registry import MODELS

logger = logging.getLogger(__name__)


class _AttentionSlot:
    """The attention plug-in of a timm residual block, stored (and named in state dicts) as ``attn``.

    timm's blocks apply ``self.se`` after the last norm, before the residual addition, whatever the
    module. Here ``se`` is an alias of ``attn``: reading it returns ``attn`` and assigning it assigns
    ``attn``, so timm's own forward applies the plug-in at that place (the same computation) while
    the module lives under ``attn`` (``layer4.0.attn.query.weight`` for a criss-cross plug-in).
    """

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__('attn' if name == 'se' else name, value)

    @property
    def se(self) -> nn.Module | None:
        return self.attn


class PluginBasicBlock(_AttentionSlot, BasicBlock):
    """timm's ``BasicBlock`` with its attention slot named ``attn``."""


class PluginBottleneck(_AttentionSlot, Bottleneck):
    """timm's ``Bottleneck`` with its attention slot named ``attn``.

    Without autograd (evaluation, inference) and without a plug-in, the forward is :meth:`forward_lean`:
    the same computation in less memory. timm's ``forward`` is its reference (``tests/test_lean_backbone.py``).
    """

    # Rows of the last 1x1 convolution's output computed at a time by forward_lean: at most this many bytes.
    lean_chunk_bytes = LEAN_BAND_BYTES

    def takes_lean_path(self) -> bool:
        """Whether :meth:`forward` runs :meth:`forward_lean`: no autograd, no plug-in, eval mode, no tracer."""
        return not (torch.is_grad_enabled() or self.attn is not None or self.training or tracing())

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_lean(x) if self.takes_lean_path() else super().forward(x)

    def forward_lean(self, x: Tensor | list[Tensor]) -> Tensor:
        """The block without autograd, its output written into the shortcut.

        timm's forward holds the 1x1 expansion's output (4x the block's width) beside the shortcut before
        adding them; here the expansion (``conv3``, ``bn3``: both act on each pixel alone) runs on row
        bands of at most :attr:`lean_chunk_bytes` and each band is added into the shortcut in place, and the
        narrow 1x1 -> 3x3 part runs by the same bands (:meth:`_narrow_lean`), so the block's peak is the
        shortcut, the block's input and the narrow 3x3 output. With a downsample the
        shortcut is a new tensor; without one it is ``x`` itself, which the block's caller must not need
        afterwards (:meth:`DilatedResNet.forward` passes a copy where a stage's output is kept). ``x`` may be
        a one-element list that this call empties: the caller then holds no reference to the input, which is
        freed as soon as the block no longer needs it.
        """
        if isinstance(x, list):
            x = x.pop()
        per_row = x[..., :1, :].numel() * x.element_size() * self.conv3.out_channels // self.conv1.in_channels
        step = band_rows(x.shape[-2], per_row, self.lean_chunk_bytes)
        y = self._narrow_lean(x, step)
        out = self.downsample(x) if self.downsample is not None else x
        del x
        rows = out.shape[-2]
        for r in range(0, rows, step):
            out[..., r:r + step, :] += self.bn3(self.conv3(y[..., r:r + step, :]))
        return self.act3(out)

    def _narrow_lean(self, x: Tensor, step: int) -> Tensor:
        """``conv1 -> bn1 -> act1 -> conv2 -> bn2 -> act2`` by bands of ``step`` output rows, each from its
        rows of ``x`` and the 3x3 convolution's halo (:func:`conv2d_rows`: zero rows only at the image's own
        borders, as its padding), so that the 1x1 reduction's whole output is never held. A strided or
        unusual ``conv2`` runs whole."""
        conv2 = self.conv2
        kh, _ = conv2.kernel_size
        halo = conv2.dilation[0] * (kh - 1) // 2
        if conv2.stride != (1, 1) or conv2.padding[0] != halo or conv2.padding_mode != 'zeros' or \
                conv2.groups != 1 or step >= x.shape[-2]:
            return self.aa(self.act2(self.drop_block(self.bn2(conv2(self.act1(self.bn1(self.conv1(x))))))))
        rows = x.shape[-2]
        y = None
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            a0, a1 = input_rows(r0, r1, kh, conv2.padding[0], conv2.dilation[0])
            a0, a1 = max(0, a0), min(rows, a1)  # conv1 of the rows inside the image; conv2d_rows pads the rest
            t = self.act1(self.bn1(self.conv1(x[..., a0:a1, :])))
            t = conv2d_rows(t, conv2.weight, conv2.padding, conv2.dilation, r0 - a0, r1 - a0, conv2.bias)
            t = self.aa(self.act2(self.drop_block(self.bn2(t))))
            if y is None:
                y = torch.empty((*t.shape[:-2], rows, t.shape[-1]), dtype=t.dtype, device=t.device,
                                memory_format=memory_format_of(x))
            y[..., r0:r1, :] = t
        return y


ARCH = {
    18: (PluginBasicBlock, (2, 2, 2, 2)),
    34: (PluginBasicBlock, (3, 4, 6, 3)),
    50: (PluginBottleneck, (3, 4, 6, 3)),
    101: (PluginBottleneck, (3, 4, 23, 3)),
    152: (PluginBottleneck, (3, 8, 36, 3)),
}

_PLUGIN_KEY = re.compile(r'layer\d+\.\d+\.attn\.')


def timm_name(depth: int, deep_stem: bool, avg_down: bool) -> str:
    """The timm model whose ImageNet weights match this layout (resnet50, resnet50c, resnet50d...)."""
    suffix = ('d' if avg_down else 'c') if deep_stem else ''
    return f'resnet{depth}{suffix}'


@MODELS.register_module()
class DilatedResNet(nn.Module):
    """ResNet whose last stages trade stride for dilation.

    Args:
        depth: 18, 34, 50, 101 or 152.
        deep_stem: three 3x3 convs (32, 32, 64 channels) instead of one 7x7 (ResNetV1c).
        avg_down: average-pool shortcut downsampling (ResNetV1d, timm's ``resnet*d``).
        output_stride: 8 (stages 3 and 4 dilated by 2 and 4), 16 or 32.
        channels: widths of the four stages; the default (64, 128, 256, 512) is the standard ResNet,
            smaller ones make tiny demo networks.
        out_indices: which stages (0..3) to return.
        norm: 'BN' (``nn.BatchNorm2d``) or 'SyncBN' (``nn.SyncBatchNorm``, see :mod:`seg.models.norm`);
            the BatchNorms of the attention plug-ins follow it.
        pretrained: None (random init), a local ``.pth`` / ``.safetensors`` file, or ``'timm'`` for the
            library's ImageNet weights (downloaded when online, or found in the hub cache).
        block_attention: attention plug-in config (``dict(type='se', ...)``) placed on the residual
            branch of every block of ``attention_stages``, before the addition (SE-ResNet placement);
            it is the block's ``attn`` submodule.
        attention_stages: stages (1..4) that receive ``block_attention``.
    """

    def __init__(self, depth: int = 50, deep_stem: bool = True, avg_down: bool = False,
                 output_stride: int = 8, channels: tuple[int, ...] = (64, 128, 256, 512),
                 out_indices: tuple[int, ...] = (0, 1, 2, 3), norm: str = 'BN',
                 pretrained: str | None = None, block_attention: dict | None = None,
                 attention_stages: tuple[int, ...] = (1, 2, 3, 4)) -> None:
        super().__init__()
        if depth not in ARCH:
            raise ValueError(f'DilatedResNet depth must be one of {sorted(ARCH)}, got {depth}')
        if output_stride not in (8, 16, 32):
            raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride}')
        if len(channels) != 4:
            raise ValueError(f'channels must give 4 stage widths, got {channels}')
        if norm not in ('BN', 'SyncBN'):
            raise ValueError(f"DilatedResNet norm must be 'BN' or 'SyncBN', got {norm!r}")
        bad_stages = [s for s in attention_stages if s not in (1, 2, 3, 4)]
        if bad_stages:
            raise ValueError(f'attention_stages must be within (1, 2, 3, 4), got {attention_stages}')
        block, layers = ARCH[depth]
        self.depth, self.deep_stem, self.avg_down = depth, deep_stem, avg_down
        self.out_indices = tuple(out_indices)
        self.norm = norm
        net = ResNet(block, layers, output_stride=output_stride, channels=tuple(channels),
                     stem_width=channels[0] // 2 if deep_stem else 64, stem_type='deep' if deep_stem else '',
                     avg_down=avg_down, num_classes=0, global_pool='',
                     norm_layer=nn.SyncBatchNorm if norm == 'SyncBN' else nn.BatchNorm2d)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        expansion = block.expansion
        all_channels = [c * expansion for c in channels]
        all_strides = [4, 8, min(16, output_stride), min(32, output_stride)]
        self.out_channels = [all_channels[i] for i in self.out_indices]
        self.strides = [all_strides[i] for i in self.out_indices]
        self.attention_param_names: set[str] = set()
        if block_attention is not None:
            self._add_block_attention(block_attention, attention_stages)
        if pretrained:
            self.load_pretrained(pretrained)

    def _add_block_attention(self, cfg: dict, stages: tuple[int, ...]) -> None:
        from seg.models.attention import build_attention

        for stage in stages:
            for block in getattr(self, f'layer{stage}'):
                # Applied after the last norm, before the residual addition (see _AttentionSlot).
                block.attn = match_norm(build_attention(dict(cfg), block.bn3.num_features if hasattr(block, 'bn3')
                                                        else block.bn2.num_features), self.norm)
        self.attention_param_names = {n for n in self.state_dict() if _PLUGIN_KEY.match(n)}

    def forward(self, x: Tensor, keep: Collection[int] | None = None) -> list[Tensor | None]:
        """The stages of ``out_indices``, in that order.

        ``keep``: positions in that list whose features are used; without autograd the others are None, so
        that their memory is freed as soon as the next stage no longer needs them (the segmentor's
        evaluation passes the positions its decode head reads). None: all. A traced graph (int8, ONNX)
        returns all.
        """
        x = self.stem(x)
        outs: list[Tensor | None] = []
        lean = not torch.is_grad_enabled() and not tracing()
        for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            if lean and outs and outs[-1] is x and isinstance(layer[0], PluginBottleneck) \
                    and layer[0].downsample is None:
                x = x.clone()  # forward_lean would write into a kept feature
            if lean and not hooked(layer):
                for block in layer:  # block by block, handing each its input: nothing here holds it
                    if isinstance(block, PluginBottleneck) and block.takes_lean_path() and not hooked(block):
                        box = [x]
                        del x
                        x = block.forward_lean(box)
                    else:
                        x = block(x)
            else:
                x = layer(x)
            if i in self.out_indices:
                outs.append(x if keep is None or not lean or len(outs) in keep else None)
            if i >= max(self.out_indices):
                break
        return outs

    # ----------------------------------------------------------------- weights
    def load_pretrained(self, pretrained: str) -> None:
        """Load ImageNet weights: ``'open-mmlab://resnet50_v1c'`` (mmcv's, as the published recipes), a
        local file, or ``'timm'``; report what does not match, once."""
        if pretrained == 'timm':
            state = _timm_state_dict(timm_name(self.depth, self.deep_stem, self.avg_down))
        else:
            path = open_mmlab_file(pretrained) if pretrained.startswith('open-mmlab://') else pretrained
            if not os.path.isfile(path):
                raise FileNotFoundError(f'pretrained weights file {pretrained!r} does not exist; give a local file, '
                                        "'open-mmlab://resnet50_v1c', 'timm' (needs network or a filled hub cache) "
                                        'or None')
            state = state_dict_of(read_weights_file(path, 'pretrained weights file'), pretrained)
        self.load_backbone_state(state, source=pretrained)

    def load_backbone_state(self, state: dict[str, Tensor], source: str = 'state dict') -> None:
        """Map a timm / torchvision (conv1, bn1, layer1..4) or mmcv (stem.0..7, layer1..4) ResNet state dict
        onto this module."""
        stripped = {}
        for key, value in state.items():
            for prefix in ('module.', 'backbone.', 'model.'):
                if key.startswith(prefix):
                    key = key[len(prefix):]
            stripped[key] = value
        if is_mmcv_resnet_layout(stripped):
            stripped = mmcv_backbone(stripped)
        mapped = {}
        for key, value in stripped.items():
            if key.startswith(('fc.', 'head.')):
                continue
            if key.startswith(('conv1', 'bn1')):
                key = _stem_key(key, self.deep_stem)
            mapped[key] = value
        own = self.state_dict()
        shape_mismatch = [k for k, v in mapped.items() if k in own and own[k].shape != v.shape]
        if shape_mismatch:
            k = shape_mismatch[0]
            raise ValueError(f'pretrained weights {source!r} do not fit this backbone: {k} has shape '
                             f'{tuple(mapped[k].shape)}, expected {tuple(own[k].shape)} '
                             f'(depth={self.depth}, deep_stem={self.deep_stem})')
        result = self.load_state_dict(mapped, strict=False)
        missing = [k for k in result.missing_keys if k not in self.attention_param_names]
        if missing:
            raise ValueError(f'pretrained weights {source!r} lack {len(missing)} backbone parameters, '
                             f'e.g. {missing[:3]}: is it a ResNet-{self.depth} '
                             f'{"deep-stem " if self.deep_stem else ""}state dict?')
        new = [k for k in result.missing_keys if k in self.attention_param_names]
        if new:
            logger.warning('loaded %s: %d parameters of the new attention modules are not in it and keep '
                           'their initialisation (e.g. %s)', source, len(new), new[0])
        if result.unexpected_keys:
            logger.warning('loaded %s: ignored %d unexpected keys (e.g. %s)', source,
                           len(result.unexpected_keys), result.unexpected_keys[0])


def _stem_key(key: str, deep_stem: bool) -> str:
    # timm: conv1.0/1/3/4/6 (deep) or conv1, bn1; ours: stem.0 = conv1, stem.1 = bn1.
    if key.startswith('conv1'):
        return 'stem.0' + key[len('conv1'):]
    return 'stem.1' + key[len('bn1'):]


def _timm_state_dict(name: str) -> dict[str, Tensor]:
    """ImageNet weights of a timm ResNet, with a clear error (never a hang) when they cannot be had."""
    import timm

    # Fail fast instead of waiting on the network: huggingface_hub honours these.
    os.environ.setdefault('HF_HUB_ETAG_TIMEOUT', '5')
    os.environ.setdefault('HF_HUB_DOWNLOAD_TIMEOUT', '10')
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0)
    except Exception as exc:  # noqa: BLE001 - any failure here means "no weights"
        raise RuntimeError(
            f"could not get timm's ImageNet weights for {name!r} ({type(exc).__name__}: {exc}). "
            'Offline? Download them on a machine with network (timm.create_model(name, pretrained=True) '
            "fills the Hugging Face cache), or set model.backbone.pretrained='/path/to/weights.pth' "
            '(a timm or torchvision ResNet state dict), or pretrained=None to train from scratch.'
        ) from exc
    return model.state_dict()
