"""Evaluation of `seg`: confusion-matrix metrics and the mmengine ``IoUMetric``."""
from .iou_metric import IoUMetric
from .metrics import confusion_matrix, format_table, metrics_from_areas, metrics_from_confusion

__all__ = ['IoUMetric', 'confusion_matrix', 'format_table', 'metrics_from_areas', 'metrics_from_confusion']
