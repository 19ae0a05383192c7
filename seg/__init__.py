"""seg: semantic segmentation with interchangeable attention heads."""

__version__ = '0.1.0'
