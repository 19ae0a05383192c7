"""Visualization of `seg`: palettes, colour label maps, overlays, side-by-side tiles, legends."""
from .overlay import legend, overlay, side_by_side
from .palette import (
    ADE20K_PALETTE,
    CITYSCAPES_PALETTE,
    NAMED_PALETTES,
    colorize,
    generate_palette,
    get_palette,
)

__all__ = [
    'ADE20K_PALETTE', 'CITYSCAPES_PALETTE', 'NAMED_PALETTES', 'colorize', 'generate_palette',
    'get_palette', 'legend', 'overlay', 'side_by_side',
]
