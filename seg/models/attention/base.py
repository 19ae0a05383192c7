"""What every module of the attention zoo is and declares, and the argument checks they share.

A module is ``Module(channels, **options)`` mapping (B, C, H, W) to (B, C, H, W). Besides its
forward it declares, as data the tests and the visualiser read (no table elsewhere lists modules):

* :attr:`AttentionModule.attention_maps`: which submodules carry its attention maps, and of what
  kind. ``'channel'`` (one weight per channel, e.g. (B, C, 1, 1)), ``'spatial'`` (a weight per
  position, (B, *, H, W)) and ``'branch'`` ((B, M, C): per-branch channel weights) name gate
  submodules whose outputs are the weights, in [0, 1]. Context modules, whose maps are never built
  whole (N x N for N pixels), name what the maps are recomputed from: ``'query'`` / ``'key'``
  convolutions, or ``''`` (kind ``'input'``) for the module's own input.
* :meth:`AttentionModule.maps`: those recordings turned into pictures, through the weight functions
  of :mod:`seg.ops` for the context modules.
* :meth:`AttentionModule.param_count`: the paper's parameter formula, where it gives one.
* :attr:`AttentionModule.residual`: whether it is a residual context block, ``x + gamma * context``
  with the gamma (non-local: the output norm) starting at 0, so that it starts as the identity.

The checks (:func:`check_int`, :func:`check_positive`, :func:`check_reduction`, :func:`check_input`)
make an impossible option fail the same way everywhere: a ``ValueError`` naming the module, the
option, the value and the constraint.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

__all__ = ['MAP_KINDS', 'AttentionMap', 'AttentionModule', 'check_input', 'check_int', 'check_positive',
           'check_reduction']

MAP_KINDS = ('channel', 'spatial', 'branch', 'query', 'key', 'input')
"""The kinds of :attr:`AttentionModule.attention_maps` (see the module docstring)."""

Locate = Callable[[int, int], tuple[int, int]]
"""Maps a feature map's (H, W) to the (row, col) of the point to draw."""


@dataclass
class AttentionMap:
    """One picture of a module's attention, for batch element 0.

    Attributes:
        kind: ``'channel'`` (values (C,): one weight per channel), ``'branch'`` ((M, C): per-branch
            channel weights), ``'spatial'`` ((H, W): a weight per position) or ``'point'`` ((H, W):
            how much the located point draws from every position).
        values: the weights.
        what: a sentence saying what they are.
        power: shown as ``values ** power`` (< 1 lifts small weights for display).
    """

    kind: str
    values: Tensor
    what: str
    power: float = 1.0


def check_int(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int, if it is an integer (not a bool) of at least ``minimum``; else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f'{owner}: {name} must be an integer >= {minimum}, got {value!r}')
    return int(value)


def check_positive(owner: str, name: str, value: Any) -> float:
    """``value`` as a float, if it is a real number > 0; else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f'{owner}: {name} must be a number > 0, got {value!r}')
    return float(value)


def check_reduction(owner: str, channels: int, reduction: Any) -> int:
    """``reduction`` as an int in [1, channels], so that ``channels // reduction >= 1``."""
    reduction = check_int(owner, 'reduction', reduction)
    if reduction > channels:
        raise ValueError(f'{owner}: reduction must be <= channels so that channels // reduction >= 1, '
                         f'got reduction={reduction} for channels={channels}')
    return reduction


def check_input(owner: str, x: Tensor, channels: int) -> None:
    """``ValueError`` unless ``x`` is (B, channels, H, W) with B, H, W >= 1."""
    if x.dim() != 4 or x.shape[1] != channels or x.numel() == 0:
        raise ValueError(f'{owner} expects a non-empty (B, {channels}, H, W) tensor, got shape {tuple(x.shape)}')


class AttentionModule(nn.Module):
    """Base of the attention zoo: ``(B, C, H, W) -> (B, C, H, W)`` plus the declarations above.

    Attributes:
        attention_maps: ``{submodule name ('' = the module itself, its input): kind}``.
        residual: a residual context block that starts as the identity (see the module docstring).
    """

    attention_maps: ClassVar[dict[str, str]] = {}
    residual: ClassVar[bool] = False

    @classmethod
    def param_count(cls, channels: int, **options: Any) -> int | None:
        """The paper's parameter count at ``channels`` with ``options``; ``None`` where there is none."""
        return None

    def maps(self, records: dict[str, list[Tensor]], locate: Locate | None = None) -> dict[str, AttentionMap]:
        """The attention maps of batch element 0, from what forward hooks recorded.

        Args:
            records: for each name of :attr:`attention_maps`, the tensors its hook saw, one per call
                (the output of a submodule; for ``''`` the module's input).
            locate: for maps of one point (context modules), maps a feature (H, W) to the point's
                (row, col); without it those maps are left out.

        Returns:
            ``{name: map}``; the name ends the file names of the pictures. The default reads the gate
            kinds from the last call: a channel gate averaged over its positions (``'channels'``), a
            spatial gate averaged over its channels (``'spatial'``), branch weights (``'branches'``).
        """
        out: dict[str, AttentionMap] = {}
        kinds = list(self.attention_maps.values())
        for name, kind in self.attention_maps.items():
            if kind not in ('channel', 'spatial', 'branch') or not records.get(name):
                continue
            value = records[name][-1][0]
            if kind == 'channel':
                values = value.flatten(1).mean(dim=1) if value.dim() >= 3 else value.reshape(-1)  # [C]
            elif kind == 'branch':
                values = value.reshape(value.shape[0], -1)  # [M, C]
            else:
                values = value.reshape(-1, *value.shape[-2:]).mean(dim=0)  # [H, W]
            key = {'channel': 'channels', 'spatial': 'spatial', 'branch': 'branches'}[kind]
            if kinds.count(kind) > 1:
                key = f'{key}-{name.replace(".", "-")}'
            out[key] = AttentionMap(kind, values, f'{type(self).__name__} {name} ({kind} weights)')
        return out
