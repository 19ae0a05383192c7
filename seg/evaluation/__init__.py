"""Evaluation of `seg`: confusion-matrix metrics and the mmengine ``IoUMetric``."""
from .attention_stats import attention_means, attention_row_stats, gate_class_gap, gate_stats
from .boundary import (
    as_area_counts,
    boundary_counts,
    boundary_iou_from_counts,
    default_boundary_distance,
    trimap_counts,
)
from .erf import effective_receptive_field, erf_radius
from .iou_metric import IoUMetric
from .metrics import confusion_matrix, format_table, metrics_from_areas, metrics_from_confusion
from .objects import object_counts, object_size_counts, recall_from_counts, size_iou_counts

__all__ = ['IoUMetric', 'confusion_matrix', 'format_table', 'metrics_from_areas', 'metrics_from_confusion']
# Issue 20's metrics: boundary, objects by size, effective receptive field, attention statistics.
__all__ += ['as_area_counts', 'attention_means', 'attention_row_stats', 'boundary_counts', 'boundary_iou_from_counts',
            'default_boundary_distance', 'effective_receptive_field', 'erf_radius', 'gate_class_gap', 'gate_stats',
            'object_counts', 'object_size_counts', 'recall_from_counts', 'size_iou_counts', 'trimap_counts']
