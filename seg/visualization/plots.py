"""Charts users expect from a segmentation run: training curves, confusion matrix, per-class IoU,
channel-weight bars and the accuracy / cost trade-off of a comparison.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no display, no global backend
change); every function writes one PNG and returns its path.
"""
from __future__ import annotations

import math
import os
import os.path as osp
from typing import Sequence

import numpy as np

from seg.engine.logs import read_scalars

__all__ = ['branch_bar_chart', 'channel_bar_chart', 'draw_branch_bars', 'draw_channel_bars', 'load_scalars', 'plot_class_differences', 'plot_curves', 'plot_heatmaps', 'plot_confusion_matrix',
           'plot_per_class_iou', 'plot_training_curves', 'plot_tradeoff']


def _figure(width: float, height: float, dpi: int = 100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> str:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path)
    return path


def plot_tradeoff(points: Sequence[tuple], path: str, xlabel: str, ylabel: str, title: str = '') -> str:
    """A scatter of labelled points (one per model), e.g. mIoU against latency, with optional error bars.

    Args:
        points: ``(label, x, y)`` or ``(label, x, y, y_low, y_high)`` per model; the bar spans
            ``[y_low, y_high]`` (e.g. a 95% interval over seeds; NaN for none).
        path: PNG to write.
        xlabel, ylabel, title: axis labels and title.

    Raises:
        ValueError: if there is no point or a coordinate is not finite.
    """
    if not points:
        raise ValueError('plot_tradeoff needs at least one (label, x, y) point')
    bad = [p for p in points if not (math.isfinite(p[1]) and math.isfinite(p[2]))]
    if bad:
        raise ValueError(f'points must have finite coordinates, got {bad}')
    fig = _figure(7, 5)
    ax = fig.add_subplot()
    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    colours = [f'C{i % 10}' for i in range(len(points))]
    for p, colour in zip(points, colours):
        if len(p) == 5 and math.isfinite(p[3]) and math.isfinite(p[4]):
            ax.errorbar([p[1]], [p[2]], yerr=[[p[2] - p[3]], [p[4] - p[2]]], fmt='none', ecolor=colour, capsize=4,
                        zorder=2)
    ax.scatter(xs, ys, s=40, c=colours, zorder=3)
    # Labels of points closer than 4% of the axes to an earlier point are stacked below its label.
    xspan = (max(xs) - min(xs)) or 1.0
    yspan = (max(ys) - min(ys)) or 1.0
    placed: list[tuple[float, float]] = []
    for label, x, y, *_ in points:
        u, v = (x - min(xs)) / xspan, (y - min(ys)) / yspan
        crowd = sum(1 for pu, pv in placed if abs(pu - u) < 0.04 and abs(pv - v) < 0.04)
        placed.append((u, v))
        ax.annotate(label, (x, y), textcoords='offset points', xytext=(5, 4 - 11 * crowd), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    # Room for the labels right of the rightmost point.
    span = (max(xs) - min(xs)) or max(abs(max(xs)), 1.0)
    ax.set_xlim(min(xs) - 0.05 * span, max(xs) + 0.25 * span)
    fig.tight_layout()
    return _save(fig, path)


def plot_curves(x: Sequence[float], series: Sequence[tuple[str, Sequence[float], Sequence[float] | None]],
                path: str, xlabel: str, ylabel: str, title: str = '', log_x: bool = False) -> str:
    """One line per model, e.g. trimap accuracy against the band width, with an optional band.

    Args:
        x: the x values, shared by every line.
        series: per model, ``(label, y values, half-width of a band or None)``.
        path: PNG to write.
        xlabel, ylabel, title: axis labels and title.
        log_x: a log-2 x axis (band widths 1, 2, 4, 8, 16).

    Raises:
        ValueError: no line, or a line of another length than ``x``.
    """
    if not series or any(len(ys) != len(x) for _, ys, _ in series):
        raise ValueError(f'need at least one line of {len(x)} values')
    fig = _figure(6.5, 4.0)
    ax = fig.add_subplot()
    xs = np.asarray(x, dtype=np.float64)
    for i, (label, ys, half) in enumerate(series):
        y = np.asarray(ys, dtype=np.float64)
        ax.plot(xs, y, marker='o', color=f'C{i % 10}', label=label)
        if half is not None:
            h = np.asarray(half, dtype=np.float64)
            ax.fill_between(xs, y - h, y + h, color=f'C{i % 10}', alpha=0.15, linewidth=0)
    if log_x:
        ax.set_xscale('log', base=2)
        ax.set_xticks(xs, [f'{v:g}' for v in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_heatmaps(maps: Sequence[tuple[str, np.ndarray]], path: str, title: str = '', label: str = '') -> str:
    """Side-by-side heatmaps of the same size (e.g. one effective receptive field per model), one colour scale.

    Raises:
        ValueError: no map, or maps of different shapes.
    """
    if not maps or any(np.shape(m) != np.shape(maps[0][1]) or np.ndim(m) != 2 for _, m in maps):
        raise ValueError('need at least one [H, W] map, all of one shape')
    h, w = np.shape(maps[0][1])
    fig = _figure(min(20.0, 0.5 + 3.2 * len(maps)), 0.9 + 3.2 * h / max(w, 1))
    top = max(float(np.max(m)) for _, m in maps) or 1.0
    image = None
    for i, (name, m) in enumerate(maps):
        ax = fig.add_subplot(1, len(maps), i + 1)
        image = ax.imshow(np.asarray(m, dtype=np.float64), cmap='magma', vmin=0.0, vmax=top, interpolation='nearest')
        ax.plot([w // 2], [h // 2], marker='+', color='cyan', markersize=8)
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.colorbar(image, ax=fig.axes, fraction=0.02, pad=0.01, label=label)
    return _save(fig, path)


def plot_class_differences(classes: Sequence[str], rows: Sequence[tuple[str, Sequence[tuple]]],
                           path: str, title: str = 'IoU difference from the baseline') -> str:
    """Per-class differences from the baseline as a models x classes grid: the colour is the difference
    (a diverging map centred on 0), and a cell whose difference is not distinguishable (its interval
    contains 0, it has no interval, or too few seeds) is hatched and its number greyed.

    The grid stays compact for many classes (ADE20K's 150: about 0.3 inch a class), unlike one bar per
    model and class.

    Args:
        classes: the class names (columns).
        rows: per model, ``(label, [(difference, low, high[, verdict]) per class])`` in IoU points; the
            optional verdict is a :class:`seg.analysis.stats.Difference` verdict string.
        path: PNG to write.
        title: figure title.

    Raises:
        ValueError: no row, or a row with another number of classes.
    """
    from matplotlib.patches import Rectangle

    names = [str(c) for c in classes]
    if not rows or any(len(values) != len(names) for _, values in rows):
        raise ValueError(f'need at least one row of {len(names)} (difference, low, high) tuples')
    diff = np.array([[v[0] for v in values] for _, values in rows], dtype=np.float64)  # [M, C]
    low = np.array([[v[1] for v in values] for _, values in rows], dtype=np.float64)
    high = np.array([[v[2] for v in values] for _, values in rows], dtype=np.float64)
    verdicts = [[v[3] if len(v) > 3 else None for v in values] for _, values in rows]
    apart = np.isfinite(low) & np.isfinite(high) & ((low > 0) | (high < 0))
    apart &= np.array([[v in (None, 'distinguishable') for v in row] for row in verdicts])
    m, c = diff.shape
    fig = _figure(min(40.0, max(6.0, 0.32 * c + 2.5)), max(2.2, 0.42 * m + 1.6))
    ax = fig.add_subplot()
    limit = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0
    image = ax.imshow(np.ma.masked_invalid(diff), cmap='RdBu', vmin=-limit or -1, vmax=limit or 1, aspect='auto')
    for i in range(m):
        for j in range(c):
            if not apart[i, j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch='///', edgecolor='0.55',
                                       linewidth=0))
            if c <= 40 and np.isfinite(diff[i, j]):
                ax.text(j, i, f'{diff[i, j]:+.1f}', ha='center', va='center', fontsize=6,
                        color='black' if apart[i, j] else '0.45')
    ax.set_xticks(range(c), names, rotation=60, ha='right', fontsize=7)
    ax.set_yticks(range(m), [label for label, _ in rows], fontsize=8)
    ax.set_title(title + ' (hatched: not distinguishable)', fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label='IoU difference (points)')
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str], path: str,
                          title: str = 'Confusion matrix (rows: ground truth, normalised per row)') -> str:
    """The row-normalised confusion matrix as an annotated heatmap.

    Args:
        confusion: [C, C] counts, rows = ground truth, columns = prediction.
        class_names: C names.
        path: PNG to write.
        title: figure title.

    Raises:
        ValueError: if the matrix is not [C, C] or does not match the names.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    names = [str(n) for n in class_names]
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(names):
        raise ValueError(f'confusion must be [C, C] with C = {len(names)} class names, got shape {cm.shape}')
    rows = cm.sum(axis=1, keepdims=True)  # [C, 1]
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)  # [C, C]
    n = len(names)
    side = max(4.0, 0.55 * n + 2.5)
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap='Blues', vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), names, rotation=60, ha='right', fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel('predicted')
    ax.set_ylabel('ground truth')
    ax.set_title(title, fontsize=10)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if norm[i, j] >= 0.005:
                    ax.text(j, i, f'{norm[i, j]:.2f}', ha='center', va='center', fontsize=6,
                            color='white' if norm[i, j] > 0.5 else 'black')
    fig.tight_layout()
    return _save(fig, path)


def plot_per_class_iou(iou: Sequence[float], class_names: Sequence[str], path: str,
                       title: str = 'Per-class IoU') -> str:
    """Horizontal bars of the IoU (fraction in [0, 1] or percent; NaN shown as 'n/a') per class.

    Raises:
        ValueError: if the lengths differ or nothing is given.
    """
    values = np.asarray(list(iou), dtype=np.float64)
    names = [str(n) for n in class_names]
    if values.ndim != 1 or len(values) != len(names) or not len(names):
        raise ValueError(f'{len(values)} IoU values for {len(names)} class names')
    finite = values[np.isfinite(values)]
    percent = values * 100.0 if finite.size and finite.max() <= 1.0 else values
    fig = _figure(7, max(2.5, 0.3 * len(names) + 1.2))
    ax = fig.add_subplot()
    ypos = np.arange(len(names))
    shown = np.nan_to_num(percent, nan=0.0)
    ax.barh(ypos, shown, color=[f'C{i % 10}' for i in range(len(names))])
    for y, v in zip(ypos, percent):
        ax.text((0 if math.isnan(v) else v) + 1, y, 'n/a' if math.isnan(v) else f'{v:.1f}', va='center',
                fontsize=8)
    ax.set_yticks(ypos, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel('IoU (%)')
    mean = np.nanmean(percent) if finite.size else float('nan')
    ax.set_title(f'{title} (mIoU {mean:.2f})' if finite.size else title)
    ax.grid(True, axis='x', alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def draw_channel_bars(ax, weights: np.ndarray, top: int = 20, title: str = 'channel weights',
                      ylabel: str = 'weight') -> None:
    """Bars of the ``top`` largest channel weights on ``ax``, labelled by channel index, largest first
    (the drawing of :func:`channel_bar_chart` and of the panels of :mod:`seg.visualization.panels`).

    Raises:
        ValueError: if ``weights`` is not a non-empty 1-D array or ``top`` < 1.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size == 0 or top < 1:
        raise ValueError(f'weights must be non-empty and top >= 1, got {w.size} weights, top={top}')
    order = np.argsort(-w, kind='stable')[:top]
    ax.bar(range(len(order)), w[order], color='C0')
    ax.set_xticks(range(len(order)), [str(i) for i in order], rotation=90, fontsize=7)
    ax.set_xlabel('channel')
    ax.set_ylabel(ylabel)
    ax.set_title(f'{title}\n(top {len(order)} of {w.size}; mean {w.mean():.3f}, min {w.min():.3f})', fontsize=9)
    ax.grid(True, axis='y', alpha=0.3)


def draw_branch_bars(ax, weights: np.ndarray, top: int = 20, title: str = 'branch weights') -> None:
    """Grouped bars of per-branch channel weights (M, C) on ``ax``: for the ``top`` channels whose weights
    vary most across the branches, one bar per branch.

    Raises:
        ValueError: if ``weights`` is not a non-empty 2-D array or ``top`` < 1.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.size == 0 or top < 1:
        raise ValueError(f'weights must be a non-empty (M, C) array and top >= 1, got shape {w.shape}, top={top}')
    m = w.shape[0]
    order = np.argsort(-(w.max(axis=0) - w.min(axis=0)), kind='stable')[:top]
    width = 0.8 / m
    for b in range(m):
        ax.bar(np.arange(len(order)) + (b - (m - 1) / 2) * width, w[b, order], width=width, label=f'branch {b}')
    ax.set_xticks(range(len(order)), [str(i) for i in order], rotation=90, fontsize=7)
    ax.set_xlabel('channel')
    ax.set_ylabel('weight')
    ax.set_title(f'{title}\n({len(order)} of {w.shape[1]} channels, those the branches weigh most differently)',
                 fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, axis='y', alpha=0.3)


def channel_bar_chart(weights: np.ndarray, path: str, top: int = 20, title: str = 'channel weights',
                      ylabel: str = 'weight') -> str:
    """Bars of the ``top`` largest channel weights, labelled by channel index, largest first.

    Args:
        weights: [C] weights.
        path: PNG to write.
        top: how many channels to show.
        title, ylabel: labels.

    Raises:
        ValueError: if ``weights`` is not a non-empty 1-D array or ``top`` < 1.
    """
    shown = min(max(int(top), 1), np.asarray(weights).size or 1)
    fig = _figure(max(5.0, 0.32 * shown + 2.0), 3.6)
    draw_channel_bars(fig.add_subplot(), weights, top, title, ylabel)
    fig.tight_layout()
    return _save(fig, path)


def branch_bar_chart(weights: np.ndarray, path: str, top: int = 20, title: str = 'branch weights') -> str:
    """Grouped bars of per-branch channel weights (M, C): for the ``top`` channels whose weights vary
    most across the branches, one bar per branch.

    Raises:
        ValueError: if ``weights`` is not a non-empty 2-D array or ``top`` < 1.
    """
    w = np.asarray(weights)
    shown = min(max(int(top), 1), w.shape[-1] if w.ndim == 2 and w.size else 1)
    fig = _figure(max(5.0, 0.45 * shown + 2.0), 3.6)
    draw_branch_bars(fig.add_subplot(), weights, top, title)
    fig.tight_layout()
    return _save(fig, path)


def load_scalars(work_dir: str) -> tuple[list[dict], list[dict]]:
    """Training and validation entries of a run's mmengine logs, as :func:`seg.engine.logs.read_scalars`
    reads them.

    Reads every ``<work_dir>/<timestamp>/vis_data/scalars.json`` (or ``work_dir`` itself when it is
    such a file), one JSON object per line, in time order; a later run (a resumed one) replaces the
    entries of the steps it repeats.

    Returns:
        ``(train, val)``: lists of dicts sorted by ``step``; training entries have ``lr`` or a
        ``loss`` key, validation entries ``mIoU`` / ``aAcc``.

    Raises:
        FileNotFoundError: if no scalars file is found.
    """
    train, val = read_scalars(work_dir)
    return [e.values for e in train], [e.values for e in val]


def plot_training_curves(work_dir: str, out_dir: str) -> dict[str, str]:
    """PNG curves of a run: ``loss.png`` (every loss term), ``lr.png`` and ``miou.png`` (mIoU, mAcc, aAcc).

    A curve without data (no validation yet) is not written.

    Returns:
        ``{'loss': path, 'lr': path, 'miou': path}`` for the files written.

    Raises:
        FileNotFoundError: if the run has no scalars file.
        ValueError: if the logs hold no entry at all.
    """
    train, val = load_scalars(work_dir)
    if not train and not val:
        raise ValueError(f'the logs of {work_dir!r} hold no training or validation entry')
    written = {}
    steps = [e.get('step', 0) for e in train]
    loss_keys = sorted({k for e in train for k in e if k.startswith('loss')}, key=lambda k: (k != 'loss', k))
    if loss_keys:
        fig = _figure(7, 4)
        ax = fig.add_subplot()
        for key in loss_keys:
            pts = [(e.get('step', 0), e[key]) for e in train if key in e]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker='.' if len(pts) < 30 else None,
                    linewidth=2 if key == 'loss' else 1, label=key)
        ax.set_xlabel('iteration')
        ax.set_ylabel('loss')
        ax.set_title('training loss')
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written['loss'] = _save(fig, osp.join(out_dir, 'loss.png'))
    if any('lr' in e for e in train):
        fig = _figure(7, 3)
        ax = fig.add_subplot()
        pts = [(s, e['lr']) for s, e in zip(steps, train) if 'lr' in e]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker='.' if len(pts) < 30 else None)
        ax.set_xlabel('iteration')
        ax.set_ylabel('learning rate')
        ax.set_title('learning rate')
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        written['lr'] = _save(fig, osp.join(out_dir, 'lr.png'))
    if val:
        fig = _figure(7, 4)
        ax = fig.add_subplot()
        for key in ('mIoU', 'mAcc', 'aAcc'):
            pts = [(e.get('step', 0), e[key]) for e in val if key in e]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker='o', label=key)
        ax.set_xlabel('iteration')
        ax.set_ylabel('%')
        ax.set_title('validation')
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written['miou'] = _save(fig, osp.join(out_dir, 'miou.png'))
    return written
