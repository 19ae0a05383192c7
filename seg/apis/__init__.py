"""User-level entry points (the tools are thin wrappers around these).

``init_model`` / ``inference_model`` (mmsegmentation's names), ``train``, ``evaluate``,
``infer_paths`` (folders, fast), ``load_config``; by module: ``seg.apis.convert`` (published
mmsegmentation models), ``seg.apis.export`` (ONNX), ``seg.apis.benchmark``, ``seg.apis.compare``
(``run_comparison``), ``seg.apis.visualize`` (attention maps of a checkpoint), ``seg.apis.demo``.
"""
from .config import load_config
from .evaluate import evaluate
from .inference import Predictor, infer_paths, inference_model, init_model
from .train import train

__all__ = ['Predictor', 'evaluate', 'infer_paths', 'inference_model', 'init_model', 'load_config', 'train']
