"""Visualization of `seg`: palettes, colour label maps, overlays, side-by-side tiles, legends,
attention heatmaps and the usual charts (training curves, confusion matrix, per-class IoU)."""
from .attention import (
    AttentionRecorder,
    criss_cross_effective_map,
    criss_cross_pixel_weights,
    criss_cross_weights,
    heatmap_overlay,
    position_attention_row,
    visualize_attention,
)
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
    channel_bar_chart,
    load_scalars,
    plot_confusion_matrix,
    plot_per_class_iou,
    plot_tradeoff,
    plot_training_curves,
)

__all__ = [
    'ADE20K_PALETTE', 'CITYSCAPES_PALETTE', 'NAMED_PALETTES', 'AttentionRecorder', 'channel_bar_chart',
    'colorize', 'criss_cross_effective_map', 'criss_cross_pixel_weights', 'criss_cross_weights',
    'generate_palette', 'get_palette', 'heatmap_overlay', 'legend', 'load_scalars', 'overlay',
    'plot_confusion_matrix', 'plot_per_class_iou', 'plot_training_curves', 'plot_tradeoff',
    'position_attention_row', 'side_by_side', 'visualize_attention',
]
