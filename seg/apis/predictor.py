"""A checkpoint's model, or an ONNX export of it, made fast for inference behind one small interface.

:class:`Predictor` owns what every backend shares: the config, the classes and palette, the test
pipeline, the model's own data preprocessor (normalisation and padding, built from the model's
``data_preprocessor`` config), same-size batching, and the rule that turns padded logits into label
maps at each image's size (:func:`seg.models.segmentor.predictions`). A backend only maps a batch of
preprocessed inputs to labels:

* :class:`TorchBackend`: the segmentor made fast (:func:`seg.engine.precision.fast_model`), its
  ``predict`` (whole or slide inference) under ``inference_mode``;
* :class:`OnnxBackend`: an ONNX file of ``tools/export_onnx.py`` in ONNX Runtime (CUDA provider on a
  CUDA device when installed); graphs exported with batch 1 run a batch image by image.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from typing import Protocol

import numpy as np
import torch
from mmengine.config import Config

from seg.datasets.transforms import build_pipeline
from seg.engine.config_data import config_from_data
from seg.engine.precision import Precision, fast_model, resolve_precision
from seg.models.segmentor import predictions
from seg.registry import MODELS

from .model_io import model_from_checkpoint

__all__ = ['Backend', 'OnnxBackend', 'Predictor', 'TorchBackend', 'test_pipeline_of']

logger = logging.getLogger(__name__)


def test_pipeline_of(cfg: Config) -> list:
    """The transforms of the config's test (else val) dataset."""
    dataset_cfg = (cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}).get('dataset', {})
    return list(dataset_cfg.get('pipeline') or [])


class Backend(Protocol):
    """Maps one preprocessed batch (the data preprocessor's ``inputs`` [B, 3, H, W] float32 and
    ``data_samples``) to label maps, int64 at each sample's ``ori_shape``."""

    def __call__(self, inputs: torch.Tensor, data_samples: list[dict]) -> list[np.ndarray]: ...


class TorchBackend:
    """The segmentor, made fast for ``precision`` (BN folded, weights cast, channels-last, compiled)."""

    def __init__(self, model: torch.nn.Module, precision: Precision, fold_bn: bool = True,
                 compile: bool = False) -> None:
        self.precision = precision
        self.model = fast_model(model, precision, fold_bn, compile)
        self.device = next(self.model.parameters()).device

    def __call__(self, inputs: torch.Tensor, data_samples: list[dict]) -> list[np.ndarray]:
        inputs = inputs.to(self.device)
        if self.precision.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            results = self.model.predict(inputs, data_samples)
        return [r['pred_sem_seg'].cpu().numpy() for r in results]


class OnnxBackend:
    """An ONNX export in ONNX Runtime; the graph's logits go through the segmentor's own rule."""

    def __init__(self, path: str, align_corners: bool, device: str | torch.device = 'cpu') -> None:
        import onnxruntime as ort

        providers = ['CPUExecutionProvider']
        if torch.device(device).type == 'cuda':
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                raise ValueError(f'device {device!r}: this onnxruntime has no CUDA provider (install onnxruntime-gpu)')
            providers.insert(0, 'CUDAExecutionProvider')
        self.session = ort.InferenceSession(path, providers=providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.batch_one = inp.shape[0] == 1  # exported with a fixed batch of 1
        self.align_corners = align_corners

    def __call__(self, inputs: torch.Tensor, data_samples: list[dict]) -> list[np.ndarray]:
        array = inputs.float().contiguous().cpu().numpy()
        chunks = [array[i:i + 1] for i in range(len(array))] if self.batch_one else [array]
        logits = torch.from_numpy(np.concatenate([self.session.run(None, {self.input_name: c})[0] for c in chunks]))
        return [r['pred_sem_seg'].numpy() for r in predictions(logits, data_samples, self.align_corners)]


def _onnx_config(path: str) -> tuple[Config, dict]:
    import onnx

    meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    if 'seg_config' not in meta:
        raise ValueError(f'{path} was not written by tools/export_onnx.py (no seg_config metadata)')
    return config_from_data(json.loads(meta['seg_config']), path), json.loads(meta.get('seg_dataset_meta', '{}'))


class Predictor:
    """Label maps of RGB images from a checkpoint (or an ONNX export of it).

    Args:
        ckpt: the checkpoint (its config and classes come with it); unused with ``onnx``.
        config: a config overriding the checkpoint's.
        device: ``'cpu'``, ``'cuda'`` ... (default: CUDA when available).
        mode: ``'whole'`` or ``'slide'`` to override the config's inference mode (PyTorch only).
        precision: ``'auto'`` (bf16 where the hardware has it, see :mod:`seg.engine.precision`),
            ``'fp32'``, ``'bf16'`` or ``'fp16'`` (PyTorch only).
        channels_last: ``'auto'`` (with bf16 / fp16), True or False.
        fold_bn: fold the BatchNorms into the convolutions (exact up to rounding).
        compile: ``torch.compile`` the network (its compile time is ``compile_seconds``, after the
            first batch).
        onnx: an ONNX file written by ``tools/export_onnx.py``: run it with ONNX Runtime instead.

    Attributes:
        cfg, classes, palette, num_classes: of the checkpoint.
        precision: the resolved :class:`seg.engine.precision.Precision` (None with ``onnx``).
        backend: the :class:`Backend` that runs the batches.
    """

    def __init__(self, ckpt: str | None = None, config: str | None = None, device: str | None = None,
                 mode: str | None = None, precision: str = 'auto', channels_last: bool | str = 'auto',
                 fold_bn: bool = True, compile: bool = False, onnx: str | None = None) -> None:
        self.compile_seconds: float | None = None
        self._compile_pending = compile and not onnx
        device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        if onnx:
            self.cfg, dataset_meta = _onnx_config(onnx)
            self.precision = None
            self.backend: Backend = OnnxBackend(onnx, bool(self.cfg.model.get('align_corners', False)), device)
            preprocessor = self.cfg.model.get('data_preprocessor') or dict(type='SegDataPreprocessor')
            self.preprocessor = MODELS.build(dict(preprocessor))
        else:
            options = {'model.test_cfg.mode': mode} if mode else None
            model, self.cfg, meta = model_from_checkpoint(ckpt, config, options, device)
            dataset_meta = meta.get('dataset_meta') or {}
            self.precision = resolve_precision(precision, next(model.parameters()).device, channels_last,
                                               inference=True)
            self.backend = TorchBackend(model, self.precision, fold_bn, compile)
            self.preprocessor = self.backend.model.data_preprocessor
            logger.info('inference with %s', self.precision.describe())
        self.pipeline = build_pipeline(test_pipeline_of(self.cfg))
        self.num_classes = int(self.cfg.model.num_classes)
        self.classes = list(dataset_meta.get('classes') or range(self.num_classes))
        self.palette = dataset_meta.get('palette')

    @property
    def model(self) -> torch.nn.Module | None:
        """The fast PyTorch model (None with ONNX Runtime)."""
        return getattr(self.backend, 'model', None)

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Label maps (int64, H x W at each image's size) of RGB uint8 images, one batch per size after
        the pipeline."""
        start = time.perf_counter()
        out = run_batches(self.backend, self.preprocessor, self.pipeline, images)
        if self._compile_pending:
            self._compile_pending = False
            self.compile_seconds = time.perf_counter() - start
        return out


def run_batches(backend: Backend, preprocessor: torch.nn.Module, pipeline, images: list[np.ndarray]) -> list[np.ndarray]:
    """Label maps of RGB uint8 images: ``pipeline`` on each, same-size images batched through
    ``preprocessor`` (the model's data preprocessor) and ``backend``."""
    samples = []
    for image in images:
        x = pipeline(image=image)['image']
        samples.append((torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))),
                        dict(ori_shape=image.shape[:2], img_shape=tuple(x.shape[:2]))))
    out: list[np.ndarray | None] = [None] * len(images)
    groups = defaultdict(list)
    for i, (tensor, _) in enumerate(samples):
        groups[tuple(tensor.shape)].append(i)
    for indices in groups.values():
        with torch.inference_mode():
            data = preprocessor(dict(inputs=[samples[i][0] for i in indices],
                                     data_samples=[samples[i][1] for i in indices]), False)
        for i, labels in zip(indices, backend(data['inputs'], data['data_samples'])):
            out[i] = labels
    return out
