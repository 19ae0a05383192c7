"""User-level entry points (the tools are thin wrappers around these).

``create_model`` / ``list_models`` (a model by name, as smp and timm users expect),
``init_model`` / ``inference_model`` (mmsegmentation's names), ``train``, ``evaluate``,
``infer_paths`` (folders, fast), ``load_config``; by module: ``seg.apis.convert`` (published
mmsegmentation models), ``seg.apis.export`` (ONNX), ``seg.apis.benchmark``, ``seg.apis.compare``
(``run_comparison``), ``seg.apis.visualize`` (attention maps of a checkpoint), ``seg.apis.demo``.
"""
from seg.engine.config import load_config

from .evaluate import evaluate
from .factory import create_model, list_models
from .inference import Predictor, infer_paths, inference_model, init_model
from .train import train

__all__ = ['Predictor', 'create_model', 'evaluate', 'infer_paths', 'inference_model', 'init_model', 'list_models',
           'load_config', 'train']
