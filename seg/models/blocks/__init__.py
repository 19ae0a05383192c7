"""Context blocks over `seg.ops` (criss-cross, ...), used by the heads and as plug-ins."""
from .criss_cross import CrissCrossAttention

__all__ = ['CrissCrossAttention']
