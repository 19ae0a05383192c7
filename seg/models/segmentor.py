"""EncoderDecoder: backbone -> decode head (+ auxiliary head) -> per-key losses or predictions.

Fully Convolutional Networks for Semantic Segmentation (Long et al.), https://arxiv.org/abs/1411.4038;
the structure and inference modes follow mmsegmentation's EncoderDecoder.
"""
from __future__ import annotations

import inspect
import logging
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn

from seg.registry import MODELS


def resize(x: Tensor, size: tuple[int, int], align_corners: bool = False) -> Tensor:
    """Bilinear resize of logits (B, K, h, w) -> (B, K, *size); a no-op at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode='bilinear', align_corners=align_corners)


@MODELS.register_module()
class EncoderDecoder(BaseModel):
    """Semantic segmentor.

    Args:
        backbone: backbone config (``forward(x) -> list[Tensor]``).
        decode_head: head config; its ``forward(feats)`` returns a dict with ``'out'`` and, for
            some methods, more supervised outputs (``'pam'``, ``'cam'``).
        auxiliary_head: optional head config; its ``'out'`` is exposed as ``'aux'``.
        loss: loss config (or list of configs, summed) applied to every supervised output key.
        loss_weights: weight per output key; a key missing here is not supervised.
        losses: per output key, a loss config or list of them replacing ``loss`` for that key
            (``dict(out=[dict(type='CrossEntropyLoss'), dict(type='DiceLoss', loss_weight=0.5)])``).
        ignore_index: label of unlabelled pixels; every loss that does not set its own gets it, and the
            data preprocessor pads labels with it (the config loader sets it from the dataset).
        nonfinite_loss: ``'stop'`` (raise on a NaN / Inf loss) or ``'skip'`` (skip that step).
        num_classes: class count; every head must predict this many.
        test_cfg: ``dict(mode='whole')`` or ``dict(mode='slide', crop_size=(h, w), stride=(h, w))``.
        align_corners: for every logits resize.
        data_preprocessor: normalisation / batching config.

    Attributes:
        compute_dtype: the dtype the network's weights were cast to for inference
            (:func:`seg.engine.precision.fast_model`: bf16 / fp16), which the normalised input is cast
            to before the backbone; None (the default) leaves the input as it comes. Logits are
            returned in float32 either way.
    """

    compute_dtype: torch.dtype | None = None

    def __init__(self, backbone: dict, decode_head: dict, num_classes: int,
                 auxiliary_head: dict | None = None,
                 loss: dict | list[dict] | None = None, loss_weights: dict | None = None,
                 losses: dict[str, dict | list[dict]] | None = None, ignore_index: int = 255,
                 nonfinite_loss: str = 'stop', test_cfg: dict | None = None, align_corners: bool = False,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        if nonfinite_loss not in ('stop', 'skip'):
            raise ValueError(f"model.nonfinite_loss must be 'stop' or 'skip', got {nonfinite_loss!r}")
        # Built here, from seg's registry: mmengine's BaseModel would look in its own root registry.
        preprocessor = dict(data_preprocessor or dict(type='SegDataPreprocessor'))
        if preprocessor.get('type') == 'SegDataPreprocessor':
            preprocessor.setdefault('seg_pad_val', ignore_index)
        super().__init__(data_preprocessor=MODELS.build(preprocessor), init_cfg=init_cfg)
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.ignore_index = ignore_index
        self.nonfinite_loss = nonfinite_loss
        self.backbone = MODELS.build(backbone)
        self.decode_head = MODELS.build(decode_head)
        self.auxiliary_head = MODELS.build(auxiliary_head) if auxiliary_head else None
        # Losses hold no parameters (nothing of them is in the state dict).
        self.default_loss = self._build_losses(loss or dict(type='CrossEntropyLoss'), 'model.loss')
        self.key_losses = nn.ModuleDict({key: self._build_losses(cfg, f'model.losses.{key}')
                                         for key, cfg in (losses or {}).items()})
        self.loss_weights = dict(loss_weights if loss_weights is not None else {'out': 1.0, 'aux': 0.4})
        self.test_cfg = dict(test_cfg or dict(mode='whole'))
        self._check_classes()
        mode = self.test_cfg.get('mode', 'whole')
        if mode not in ('whole', 'slide'):
            raise ValueError(f"test_cfg.mode must be 'whole' or 'slide', got {mode!r}")

    def _build_losses(self, cfg: dict | list[dict], where: str) -> nn.ModuleList:
        """One loss config or a list of them (summed); each gets the model's ``ignore_index`` unless it sets one."""
        cfgs = [cfg] if isinstance(cfg, dict) else list(cfg)
        if not cfgs or not all(isinstance(c, dict) for c in cfgs):
            raise ValueError(f'{where} must be a loss config dict or a non-empty list of them, got {cfg!r}')
        return nn.ModuleList(MODELS.build(c, default_args=dict(ignore_index=self.ignore_index)) for c in cfgs)

    def _check_classes(self) -> None:
        for name, head in (('decode_head', self.decode_head), ('auxiliary_head', self.auxiliary_head)):
            cls = getattr(head, 'cls', None) if head is not None else None
            conv = cls[-1] if isinstance(cls, nn.Sequential) else cls
            if isinstance(conv, nn.Conv2d) and conv.out_channels != self.num_classes:
                raise ValueError(f'model.{name}.num_classes is {conv.out_channels} but model.num_classes '
                                 f'is {self.num_classes}: they must agree')

    # ---------------------------------------------------------------- forward
    def forward_logits(self, inputs: Tensor) -> dict[str, Tensor]:
        """All logits at feature resolution: ``out`` plus the head's extras and ``aux`` in training."""
        if self.compute_dtype is not None and inputs.dtype != self.compute_dtype:
            inputs = inputs.to(self.compute_dtype)
        aux = self.training and self.auxiliary_head is not None
        reads = None if aux or torch.is_grad_enabled() else self.feature_reads()
        if reads is None or not self._prunes_features():
            feats = self.backbone(inputs)
        else:  # inference: the features the head does not read are not kept, the others let go after their last read
            feats = FeatureList(self.backbone(inputs, keep=set(reads)), reads)
        outs = dict(self.decode_head(feats))
        if self.auxiliary_head is not None and self.training:
            outs['aux'] = self.auxiliary_head(feats)['out']
        return outs

    def _prunes_features(self) -> bool:
        """Whether the backbone takes ``keep`` (:class:`DilatedResNet` does)."""
        return 'keep' in inspect.signature(self.backbone.forward).parameters

    def feature_reads(self) -> dict[int, int] | None:
        """How many times the decode head reads each position of the backbone's outputs: the ``in_index`` of it
        and of its stages, as mmsegmentation's heads declare them; None where a head declares none."""
        count = len(getattr(self.backbone, 'out_indices', ()))
        reads: dict[int, int] = {}
        for module in self.decode_head.modules():
            index = getattr(module, 'in_index', None)
            if index is None:
                continue
            for i in index if isinstance(index, (tuple, list)) else (index,):
                i = int(i) % count if count else int(i)
                reads[i] = reads.get(i, 0) + 1
        return reads or None

    def val_step(self, data: dict) -> list[dict]:
        """mmengine's; a batch whose files were all unreadable (``on_bad_file='skip'``) predicts nothing."""
        return super().val_step(data) if data.get('inputs') else []

    def test_step(self, data: dict) -> list[dict]:
        """mmengine's; a batch whose files were all unreadable (``on_bad_file='skip'``) predicts nothing."""
        return super().test_step(data) if data.get('inputs') else []

    def forward(self, inputs: Tensor, data_samples: list[dict] | None = None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return resize(self.forward_logits(inputs)['out'].float(), inputs.shape[-2:], self.align_corners)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss(self, inputs: Tensor, data_samples: list[dict]) -> dict[str, Tensor]:
        """Per supervised output key ``k``: ``loss_k`` (or ``loss_k_<name>`` for each of several losses),
        weighted by ``loss_weights[k]``; plus ``acc_seg`` of the main output."""
        target = torch.stack([s['gt_sem_seg'] for s in data_samples]).long()  # [B, H, W]
        losses = {}
        for key, logits in self.forward_logits(inputs).items():
            weight = self.loss_weights.get(key, 0.0)
            if weight == 0:
                continue
            logits = resize(logits, target.shape[-2:], self.align_corners).float()
            fns = self.key_losses[key] if key in self.key_losses else self.default_loss
            for fn in fns:
                name = f'loss_{key}' if len(fns) == 1 else f'loss_{key}_{fn.short_name}'
                losses[name] = weight * fn(logits, target)
            if key == 'out':
                with torch.no_grad():
                    valid = target != self.ignore_index
                    correct = (logits.argmax(1) == target) & valid
                    losses['acc_seg'] = correct.sum() * 100.0 / valid.sum().clamp(min=1)
        return losses

    def parse_losses(self, losses: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """mmengine's sum of the ``loss*`` terms, checked for NaN / Inf on every process at once.

        A non-finite total stops training (``nonfinite_loss='stop'``) with a ``FloatingPointError``
        naming the iteration and every loss term, before anything is updated, so the last checkpoint
        stays the last good one; with ``'skip'`` a warning says the same and the returned total is NaN
        on every process, which :class:`seg.engine.SegOptimWrapper` takes as "skip this step".
        """
        total, log_vars = super().parse_losses(losses)
        finite = torch.isfinite(total.detach()).float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)  # the same decision on every process
        if bool(finite):
            return total, log_vars
        from mmengine.logging import MessageHub, print_log

        hub = MessageHub.get_current_instance()
        step = hub.get_info('iter')
        terms = ', '.join(f'{k}={float(v.detach()):.6g}' for k, v in log_vars.items() if k.startswith('loss'))
        where = f'iteration {step + 1}' if isinstance(step, int) else 'this step'
        message = (f'non-finite loss at {where} ({terms}; a term is finite on this process if another process '
                   'had the NaN / Inf)')
        if self.nonfinite_loss == 'stop':
            raise FloatingPointError(message + '. Training stopped before the update; the last checkpoint is the '
                                     "last good one. model.nonfinite_loss='skip' skips such steps instead.")
        print_log(message + ': step skipped (model.nonfinite_loss=skip)', logger='current', level=logging.WARNING)
        return total * float('nan'), log_vars  # NaN everywhere: every process skips alike

    # -------------------------------------------------------------- inference
    @torch.no_grad()
    def inference(self, inputs: Tensor) -> Tensor:
        """Logits at the input size, by whole-image or sliding-window inference."""
        if self.test_cfg.get('mode', 'whole') == 'slide':
            return self.slide_inference(inputs)
        return resize(self.forward_logits(inputs)['out'].float(), inputs.shape[-2:], self.align_corners)

    def slide_inference(self, inputs: Tensor) -> Tensor:
        """Overlapping crops (``crop_size``, ``stride``), logits averaged where crops overlap."""
        crop_h, crop_w = self.test_cfg['crop_size']
        stride_h, stride_w = self.test_cfg['stride']
        b, _, h, w = inputs.shape
        grids_h = max(math.ceil((h - crop_h) / stride_h), 0) + 1
        grids_w = max(math.ceil((w - crop_w) / stride_w), 0) + 1
        logits = inputs.new_zeros(b, self.num_classes, h, w)
        count = inputs.new_zeros(1, 1, h, w)
        for gy in range(grids_h):
            for gx in range(grids_w):
                y1 = max(min(gy * stride_h, h - crop_h), 0)
                x1 = max(min(gx * stride_w, w - crop_w), 0)
                y2, x2 = min(y1 + crop_h, h), min(x1 + crop_w, w)
                crop = inputs[:, :, y1:y2, x1:x2]
                ch, cw = crop.shape[-2:]
                # Crops smaller than crop_size (small images) are padded, then the padding is cut off.
                crop = F.pad(crop, (0, crop_w - cw, 0, crop_h - ch))
                out = resize(self.forward_logits(crop)['out'].float(), (crop_h, crop_w), self.align_corners)
                logits[:, :, y1:y2, x1:x2] += out[:, :, :ch, :cw]
                count[:, :, y1:y2, x1:x2] += 1
        return logits / count

    def predict(self, inputs: Tensor, data_samples: list[dict] | None = None) -> list[dict]:
        """Per sample: ``pred_sem_seg`` (int64 [H, W] at the label size, or the original image size
        when there is no label), ``seg_logits`` only if ``test_cfg.return_logits``, and the sample's
        other keys (``gt_sem_seg``, ``img_path``...)."""
        logits = self.inference(inputs)
        return predictions(logits, data_samples, self.align_corners, bool(self.test_cfg.get('return_logits')))


class FeatureList(list):
    """The backbone's features for one inference pass of a decode head: a list that lets go of a feature after
    its last declared read (``reads``: position -> count), so that a head's first convolution can free the
    wide backbone map it no longer needs. Reading a position more often than declared is an error that
    names it. Training and direct calls of a head use plain lists."""

    def __init__(self, feats: list, reads: dict[int, int]) -> None:
        super().__init__(feats)
        self._left = {i % max(len(feats), 1): n for i, n in reads.items()}

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list.__getitem__(self, index)
        i = index % len(self)
        left = self._left.get(i)
        if left is None or left < 1:
            raise RuntimeError(f'the decode head read backbone feature {index} more often than its in_index '
                               'declares; declare every feature a head reads in its in_index')
        value = list.__getitem__(self, i)
        self._left[i] = left - 1
        if left == 1:
            list.__setitem__(self, i, None)
        return value


def predictions(logits: Tensor, data_samples: list[dict] | None, align_corners: bool = False,
                return_logits: bool = False) -> list[dict]:
    """Per sample of a padded batch's logits [B, K, H, W]: the padding cropped to ``img_shape``, resized to
    the label size (or ``ori_shape``), ``pred_sem_seg`` the argmax; every backend's one rule (the
    segmentor's ``predict``, ONNX Runtime's outputs in :class:`seg.apis.predictor.Predictor`)."""
    samples = data_samples or [{} for _ in range(logits.shape[0])]
    results = []
    for i, sample in enumerate(samples):
        h, w = sample.get('img_shape', logits.shape[-2:])
        one = logits[i:i + 1, :, :h, :w]
        gt = sample.get('gt_sem_seg')
        size = tuple(gt.shape[-2:]) if gt is not None else tuple(sample.get('ori_shape', (h, w)))
        one = resize(one, size, align_corners)
        result = dict(sample)
        result['pred_sem_seg'] = one.argmax(1)[0]
        if return_logits:
            result['seg_logits'] = one[0]
        results.append(result)
    return results
