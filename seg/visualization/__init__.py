"""Visualization of `seg`: palettes, colour label maps, overlays, side-by-side tiles, legends,
attention heatmaps and the usual charts (training curves, confusion matrix, per-class IoU)."""
from .attention import AttentionRecorder, Geometry, cam_layers, draw_attention, grad_cam, heatmap_overlay
from .overlay import legend, overlay, side_by_side
from .palette import (
    ADE20K_PALETTE,
    CITYSCAPES_PALETTE,
    NAMED_PALETTES,
    colorize,
    generate_palette,
    get_palette,
)
from .plots import (
    branch_bar_chart,
    channel_bar_chart,
    load_scalars,
    plot_confusion_matrix,
    plot_per_class_iou,
    plot_tradeoff,
    plot_training_curves,
)

__all__ = [
    'ADE20K_PALETTE', 'CITYSCAPES_PALETTE', 'NAMED_PALETTES', 'AttentionRecorder', 'Geometry', 'branch_bar_chart',
    'cam_layers', 'channel_bar_chart', 'colorize', 'draw_attention', 'generate_palette', 'get_palette', 'grad_cam',
    'heatmap_overlay', 'legend', 'load_scalars', 'overlay', 'plot_confusion_matrix', 'plot_per_class_iou',
    'plot_training_curves', 'plot_tradeoff', 'side_by_side',
]
