"""Panel figures: what a point of an image draws from, module by module, legible at a glance.

A :class:`Panel` is one picture: the input with the point marked, the prediction with its legend, a map
over the image (an attention module's map of the point, a spatial gate, Grad-CAM, the effective receptive
field of the point) or bars (channel weights, per-branch weights). Every panel is titled with its
module, map and point; maps carry a colour bar in their own units and are drawn with nearest-neighbour
cells at the module's own resolution (Grad-CAM and the ERF, at the input's resolution, smoothly), over
the image, at least :data:`PANEL_PX` pixels wide. The point is a black-and-white ring with a cross,
visible on any colour.

Scales (:func:`choose_scale`): a map whose positive values span :data:`LOG_SPAN` or more (three orders of
magnitude) is drawn on a log scale clipped at :data:`LOG_DECADES` decades below its maximum, zeros
left transparent (a criss-cross pass is zero off the pixel's cross); otherwise on the power scale its
module declares (``AttentionMap.power``, the square root for the criss-cross composition), else
linear between its minimum and maximum. The title says which.

:func:`render_panel` draws one panel as PNG bytes (the explorer, :mod:`seg.apis.explore`);
:func:`panel_figure` a grid of them (``tools/visualize_attention.py``); both call :func:`_draw`.
:func:`attention_panels` turns an :class:`~seg.visualization.attention.AttentionRecorder`'s records into
panels through each module's own :meth:`~seg.models.attention.AttentionModule.maps`.
"""
from __future__ import annotations

import hashlib
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import cv2
import numpy as np

from .attention import Geometry, registered_name
from .plots import draw_branch_bars, draw_channel_bars

__all__ = ['DPI', 'LOG_DECADES', 'LOG_SPAN', 'PANEL_PX', 'Panel', 'Scale', 'attention_panels', 'choose_scale',
           'image_panel', 'map_panel', 'panel_figure', 'prediction_panel', 'render_panel']

DPI = 120
PANEL_PX = 780
"""Width of one panel in pixels (6.5 inches at :data:`DPI`)."""
LOG_SPAN = 1e3
"""Positive values spanning this ratio (max / smallest positive) or more are drawn on a log scale."""
LOG_DECADES = 4
"""A log scale covers this many decades below the maximum; smaller values take its lowest colour."""

_W = PANEL_PX / DPI  # panel width, inches
_TITLE = 0.5  # room for a two-line title, inches
_SIDE = 0.1  # left / bottom margin of image panels
_BAR = 1.0  # right margin of image panels: the colour bar and its labels, or the legend
_CMAP = 'turbo'
_ALPHA = 0.6


@dataclass(frozen=True)
class Scale:
    """How a map's values become colours: ``'linear'``, ``'power'`` (``values ** gamma``) or ``'log'``."""

    name: str
    vmin: float
    vmax: float
    gamma: float = 1.0

    def describe(self) -> str:
        """What the title says: ``'linear scale'``, ``'power 0.5 scale'``, ``'log scale (4 decades)'``."""
        if self.name == 'log':
            return f'log scale ({np.log10(self.vmax / self.vmin):.0f} decades)'
        if self.name == 'power':
            return f'power {self.gamma:g} scale'
        return 'linear scale'

    def norm(self):
        from matplotlib.colors import LogNorm, Normalize, PowerNorm

        if self.name == 'log':
            return LogNorm(self.vmin, self.vmax, clip=True)
        if self.name == 'power':
            return PowerNorm(self.gamma, self.vmin, self.vmax, clip=True)
        return Normalize(self.vmin, self.vmax)


def choose_scale(values: np.ndarray, power: float = 1.0) -> Scale:
    """The scale a map is drawn on (the module docstring says the rule)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Scale('linear', 0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    positive = v[v > 0]
    if lo >= 0 and positive.size and hi / float(positive.min()) >= LOG_SPAN:
        return Scale('log', max(float(positive.min()), hi * 10.0 ** -LOG_DECADES), hi)
    if lo >= 0 and power != 1.0 and hi > 0:
        return Scale('power', 0.0, hi, float(power))
    return Scale('linear', lo, hi if hi > lo else lo + 1.0)


@dataclass
class Panel:
    """One picture of a panel figure.

    Attributes:
        title: up to two lines: module and map, then what it shows, the point and the scale.
        kind: ``'image'`` (``image`` alone, with an optional ``legend``), ``'map'`` (``values`` [h, w] over
            ``image``), ``'channel'`` (bars of ``values`` [C]) or ``'branch'`` (grouped bars, [M, C]).
        values: the map or the weights.
        image: the RGB uint8 background, at any resolution: drawn over the original image's extent.
        size: the original image's (H, W): the panel's extent.
        cover: (H, W), in original pixels, that ``values`` covers from the top-left corner (the padded
            network input: :meth:`~seg.visualization.attention.Geometry.cover`).
        point: (x, y) marked, in original pixels.
        scale: how ``values`` become colours (maps).
        smooth: bilinear display (input-resolution maps) instead of nearest-neighbour cells.
        label: the colour bar's label.
        legend: ``(name, (r, g, b))`` entries drawn beside an image.
        top: bars shown of a ``'channel'`` / ``'branch'`` panel.
        info: what the panel shows, as data (module, map, resolution, feature pixel, value range...).
    """

    title: str
    kind: str
    values: np.ndarray | None = None
    image: np.ndarray | None = None
    size: tuple[int, int] = (0, 0)
    cover: tuple[float, float] | None = None
    point: tuple[int, int] | None = None
    scale: Scale | None = None
    smooth: bool = False
    label: str = ''
    legend: list[tuple[str, tuple[int, int, int]]] = field(default_factory=list)
    top: int = 20
    info: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ builders
def _checksum(values: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(values, dtype=np.float32).tobytes()).hexdigest()[:12]


def image_panel(image: np.ndarray, title: str, point: tuple[int, int] | None = None,
                legend: Sequence[tuple[str, tuple[int, int, int]]] = ()) -> Panel:
    """The image itself, with the point marked and an optional legend."""
    return Panel(title, 'image', image=image, size=tuple(image.shape[:2]), point=point, legend=list(legend))


def prediction_panel(image: np.ndarray, pred: np.ndarray, palette: np.ndarray, classes: Sequence[str],
                     point: tuple[int, int] | None = None, title: str = 'prediction', alpha: float = 0.55) -> Panel:
    """The prediction's colours over the image, with a legend of the classes it predicts (largest first)."""
    from .overlay import overlay
    from .palette import colorize

    ids, counts = np.unique(pred, return_counts=True)
    shown = [int(i) for i in ids[np.argsort(-counts, kind='stable')] if 0 <= i < len(classes)]
    legend = [(str(classes[i]), tuple(int(c) for c in palette[i])) for i in shown]
    if point is not None:
        x, y = point
        title = f'{title} | point ({x}, {y}): {classes[int(pred[y, x])]}'
    return image_panel(overlay(image, colorize(pred, palette), alpha), title, point, legend)


def map_panel(image: np.ndarray, values: np.ndarray, cover: tuple[float, float], title: str,
              point: tuple[int, int] | None = None, power: float = 1.0, smooth: bool = False, label: str = 'weight',
              info: dict | None = None) -> Panel:
    """A map over the image; the scale is chosen (:func:`choose_scale`) and said at the end of the title."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        values = values.reshape(-1, *values.shape[-2:]).mean(axis=0)  # [h, w]
    scale = choose_scale(values, power)
    info = dict(info or {}, resolution=list(values.shape), min=float(values.min()), max=float(values.max()),
                scale=scale.describe(), checksum=_checksum(values))
    return Panel(f'{title}; {scale.describe()}', 'map', values=values, image=image, size=tuple(image.shape[:2]),
                 cover=tuple(cover), point=point, scale=scale, smooth=smooth, label=label, info=info)


def attention_panels(modules: Mapping[str, object], records: Mapping[str, dict], geom: Geometry, image: np.ndarray,
                     point: tuple[int, int] | None = None, gates: bool = True, top: int = 20) -> list[Panel]:
    """Panels of every recorded attention module: with ``point``, each map of that point (criss-cross
    passes and their composition, attention rows); with ``gates``, the gate weights (channel and branch
    bars, spatial maps). Each module's own ``maps()`` makes the maps.

    Args:
        modules: ``{name: AttentionModule}`` (``AttentionRecorder.modules``).
        records: ``{name: {declared name: [tensor per call]}}`` (``AttentionRecorder.records``).
        geom: the image / input / feature sizes.
        image: the original RGB image.
        point: (x, y) of the original image, or None for the gates alone.
        gates: include the point-independent maps.
        top: channels shown in the bar panels.
    """
    panels: list[Panel] = []
    cover = geom.cover()
    for name, module in modules.items():
        recs = records.get(name)
        if not recs:
            continue
        kind = registered_name(module)
        pixel: list[int] = []
        locate = None
        if point is not None:
            def locate(h: int, w: int, x=point[0], y=point[1], pixel=pixel) -> tuple[int, int]:
                pixel[:] = geom.to_feature(x, y, (h, w))
                return pixel[0], pixel[1]
        for key, amap in module.maps(recs, locate).items():
            values = amap.values.detach().float().cpu().numpy()
            head = f'{name or "model"} [{kind}] {key}'.rstrip()
            info = dict(module=name, type=kind, map=key, what=amap.what, kind=amap.kind)
            if amap.kind == 'point' and point is not None:
                x, y = point
                h, w = values.shape[-2:]
                info.update(point=[x, y], feature_pixel=list(pixel))
                panels.append(map_panel(image, values, cover, f'{head} | point ({x}, {y})\n{amap.what}; cell '
                                        f'({pixel[0]}, {pixel[1]}) of {h}x{w}', point, amap.power, info=info))
            elif amap.kind == 'spatial' and gates:
                h, w = values.shape[-2:]
                panels.append(map_panel(image, values, cover, f'{head}\n{amap.what}; {h}x{w}', point, amap.power,
                                        info=info))
            elif amap.kind in ('channel', 'branch') and gates:
                info.update(shape=list(values.shape), min=float(values.min()), max=float(values.max()),
                            checksum=_checksum(values))
                panels.append(Panel(f'{head}: {amap.what}', amap.kind, values=values, top=top, info=info))
    return panels


# ------------------------------------------------------------------------------------------ drawing
def _height(panel: Panel) -> float:
    """The panel's height in inches at width :data:`_W`."""
    if panel.kind in ('channel', 'branch'):
        return 3.2
    h, w = panel.size
    axes_w = _W - _SIDE - _BAR
    return _TITLE + _SIDE + float(np.clip(axes_w * h / max(w, 1), 1.2, 7.0))


def _composite(panel: Panel, width_px: int, height_px: int) -> np.ndarray:
    """The panel's picture at exactly the axes' pixels: the image, and a map's colours blended over it
    (masked cells transparent), the map's cells enlarged nearest-neighbour (bilinear when ``smooth``).
    Done here rather than by matplotlib's resampling: exact cells, and several times faster."""
    import matplotlib

    h, w = panel.size
    base = cv2.resize(panel.image, (width_px, height_px), interpolation=cv2.INTER_AREA
                      if panel.image.shape[1] > width_px else cv2.INTER_LINEAR).astype(np.float32)  # [h', w', 3]
    if panel.kind != 'map':
        return base.astype(np.uint8)
    ch, cw = panel.cover
    size = (max(1, round(cw * width_px / w)), max(1, round(ch * height_px / h)))  # the whole map, in axes pixels
    values = np.asarray(panel.values, dtype=np.float32)
    if panel.smooth:
        values = cv2.resize(values, size, interpolation=cv2.INTER_LINEAR)
    masked = np.ma.masked_less_equal(values, 0) if panel.scale.name == 'log' else np.ma.masked_invalid(values)
    rgba = matplotlib.colormaps[_CMAP](panel.scale.norm()(masked), bytes=True)  # [hm, wm, 4] uint8
    rgba[..., 3] = np.where(np.ma.getmaskarray(masked), 0, rgba[..., 3])
    if not panel.smooth:
        rgba = cv2.resize(rgba, size, interpolation=cv2.INTER_NEAREST)
    layer = np.zeros((height_px, width_px, 4), dtype=np.uint8)
    hh, ww = min(height_px, rgba.shape[0]), min(width_px, rgba.shape[1])
    layer[:hh, :ww] = rgba[:hh, :ww]
    alpha = _ALPHA * layer[..., 3:4].astype(np.float32) / 255.0  # [h', w', 1]
    return np.clip(base * (1.0 - alpha) + layer[..., :3] * alpha + 0.5, 0, 255).astype(np.uint8)


def _mark(ax, point: tuple[int, int]) -> None:
    x, y = point
    for colour, width in (('black', 4.0), ('white', 2.0)):
        ax.plot([x], [y], marker='o', markersize=17, markerfacecolor='none', markeredgecolor=colour,
                markeredgewidth=width)
        ax.plot([x], [y], marker='+', markersize=9, color=colour, markeredgewidth=width * 0.6)


def _draw(fig, panel: Panel, x0: float, y0: float, fig_w: float, fig_h: float) -> None:
    """Draw ``panel`` into the slot of width :data:`_W` whose top-left corner is (x0, y0) inches."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, NullLocator

    height = _height(panel)

    def rect(left: float, bottom: float, width: float, h: float):  # inches within the slot -> figure fraction
        return (x0 + left) / fig_w, 1.0 - (y0 + height - bottom) / fig_h, width / fig_w, h / fig_h

    if panel.kind == 'channel' or panel.kind == 'branch':
        ax = fig.add_axes(rect(0.75, 0.6, _W - 0.95, height - 0.6 - _TITLE - 0.05))
        draw = draw_channel_bars if panel.kind == 'channel' else draw_branch_bars
        draw(ax, panel.values, panel.top, panel.title)
        ax.title.set_fontsize(8)
        ax.title.set_horizontalalignment('left')
        ax.title.set_position((0.0, 1.0))
        return
    axes_h = height - _TITLE - _SIDE
    ax = fig.add_axes(rect(_SIDE, _SIDE, _W - _SIDE - _BAR, axes_h))
    h, w = panel.size
    picture = _composite(panel, round((_W - _SIDE - _BAR) * DPI), round(axes_h * DPI))
    ax.imshow(picture, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation='nearest', aspect='auto')
    if panel.kind == 'map':
        from matplotlib.cm import ScalarMappable

        norm = panel.scale.norm()
        cax = fig.add_axes(rect(_W - _BAR + 0.1, _SIDE, 0.14, axes_h))
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=_CMAP), cax=cax)
        # Plain tick labels: matplotlib's default log labels are math text, slow to lay out.
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:.0e}' if panel.scale.name == 'log'
                                                       else f'{v:.3g}'))
        bar.ax.yaxis.set_minor_locator(NullLocator())
        if panel.scale.name != 'log':  # ticks evenly spaced in colour, so a power scale's do not crowd
            bar.set_ticks([float(t) for t in norm.inverse(np.linspace(0.0, 1.0, 6))])
        bar.ax.tick_params(labelsize=7)
        if panel.label:
            bar.set_label(panel.label, fontsize=7)
    elif panel.legend:
        handles = [Patch(facecolor=np.asarray(c) / 255.0, edgecolor='0.3', label=n) for n, c in panel.legend[:24]]
        ax.legend(handles=handles, loc='upper left', bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=6.5,
                  frameon=False, handlelength=1.0, handletextpad=0.4, labelspacing=0.3)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(panel.title, fontsize=8, loc='left')
    if panel.point is not None:
        _mark(ax, panel.point)


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _encode(fig, fmt: str = 'png') -> bytes:
    """The drawn figure as PNG (lossless, for files) or JPEG bytes (quality 92: a tenth of the encoding
    time, for the explorer's page)."""
    fig.canvas.draw()
    rgb = cv2.cvtColor(np.asarray(fig.canvas.buffer_rgba()), cv2.COLOR_RGBA2BGR)
    if fmt not in ('png', 'jpeg'):
        raise ValueError(f"format must be 'png' or 'jpeg', got {fmt!r}")
    ok, buf = cv2.imencode('.png', rgb, [cv2.IMWRITE_PNG_COMPRESSION, 3]) if fmt == 'png' else \
        cv2.imencode('.jpg', rgb, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RuntimeError(f'{fmt} encoding failed')
    return buf.tobytes()


def render_panel(panel: Panel, fmt: str = 'png') -> bytes:
    """One panel as PNG (or ``fmt='jpeg'``) bytes, :data:`PANEL_PX` pixels wide."""
    height = _height(panel)
    fig = _new_figure(_W, height)
    _draw(fig, panel, 0.0, 0.0, _W, height)
    return _encode(fig, fmt)


def panel_figure(panels: Sequence[Panel], path: str | os.PathLike | None = None, columns: int = 2,
                 title: str = '') -> bytes | str:
    """Panels in a grid, row by row, each :data:`PANEL_PX` pixels wide; a column of ``None`` gaps is allowed
    (``panels`` may hold ``None`` for an empty slot).

    Returns:
        ``path`` once written, or the PNG bytes when ``path`` is None.

    Raises:
        ValueError: no panel, or ``columns`` < 1.
    """
    if columns < 1 or not any(p is not None for p in panels):
        raise ValueError(f'need at least one panel and columns >= 1, got {len(panels)} panels, columns={columns}')
    rows = [list(panels[i:i + columns]) for i in range(0, len(panels), columns)]
    heights = [max(_height(p) for p in row if p is not None) if any(p is not None for p in row) else 0.5
               for row in rows]
    top = 0.3 if title else 0.0
    fig_w, fig_h = _W * min(columns, len(panels)), top + sum(heights) + 0.1
    fig = _new_figure(fig_w, fig_h)
    if title:
        fig.text(0.01, 1.0 - 0.08 / fig_h, title, fontsize=10, va='top', weight='bold')
    y = top
    for row, height in zip(rows, heights):
        for c, panel in enumerate(row):
            if panel is not None:
                _draw(fig, panel, c * _W, y, fig_w, fig_h)
        y += height
    png = _encode(fig, 'png')
    if path is None:
        return png
    os.makedirs(osp.dirname(osp.abspath(path)) or '.', exist_ok=True)
    with open(path, 'wb') as f:
        f.write(png)
    return str(path)
