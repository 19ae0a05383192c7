"""User-level entry points: train, evaluate, infer (the tools are thin wrappers around these)."""
from .config import load_config
from .evaluate import evaluate
from .inference import Segmenter, infer_paths
from .train import train

__all__ = ['Segmenter', 'evaluate', 'infer_paths', 'load_config', 'train']
