"""Models: backbones, heads, attention plug-ins, losses and the segmentor (all registered in MODELS)."""
from . import attention, backbones, heads, losses  # noqa: F401  (registration)
from .data_preprocessor import SegDataPreprocessor
from .segmentor import EncoderDecoder

__all__ = ['EncoderDecoder', 'SegDataPreprocessor']
