"""Effective receptive field of a segmentation model (Luo, Li, Urtasun, Zemel, "Understanding the
Effective Receptive Field in Deep Convolutional Neural Networks", NeurIPS 2016).

The ERF of the centre output pixel is the gradient of that pixel's output with respect to the input.
Here the output is the logit of the class the model predicts at the centre (its argmax there), the
gradient's absolute value is summed over the input channels, and the maps are averaged over images.
:func:`erf_radius` summarises the map by the smallest centred square holding a given share of its mass.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ['effective_receptive_field', 'erf_radius']


def effective_receptive_field(model_fn: Callable[[Tensor], Tensor], images: Tensor, batch_size: int = 8,
                              centre: tuple[int, int] | None = None) -> np.ndarray:
    """The mean absolute input gradient of the centre pixel's predicted-class logit.

    Args:
        model_fn: ``logits = model_fn(x)``, x [B, 3, H, W] -> logits [B, K, H, W] at the input size. It
            must treat the images of a batch independently (a model in eval mode: BatchNorm in training
            mode would mix the images' gradients).
        images: [N, 3, H, W] float input, already normalised as the model expects; on the model's device.
        batch_size: images per backward pass.
        centre: the output pixel ``(y, x)``; default ``(H // 2, W // 2)``.

    Returns:
        float64 [H, W]: ``mean_n sum_ch |d logit_n[k_n, y, x] / d images[n, ch]|`` with
        ``k_n = argmax_k logit_n[k, y, x]``. Only the input's gradient is computed (the model's
        parameters get none); works under ``torch.no_grad`` / ``inference_mode`` callers too.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f'images must be a float tensor [N, C, H, W], got '
                         f'{getattr(images, "shape", type(images).__name__)}')
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    n, _, h, w = images.shape
    if n == 0:
        raise ValueError('need at least one image')
    cy, cx = (h // 2, w // 2) if centre is None else (int(centre[0]), int(centre[1]))
    if not (0 <= cy < h and 0 <= cx < w):
        raise ValueError(f'centre {(cy, cx)} outside the {h} x {w} image')
    with torch.inference_mode(False), torch.enable_grad():
        total = torch.zeros(h, w, dtype=torch.float64, device=images.device)
        for start in range(0, n, batch_size):
            x = images[start:start + batch_size].detach().clone().requires_grad_(True)  # [B, 3, H, W]
            logits = model_fn(x)  # [B, K, H, W]
            if logits.dim() != 4 or logits.shape[0] != x.shape[0] or tuple(logits.shape[2:]) != (h, w):
                raise ValueError(f'model_fn must return logits [B, K, {h}, {w}] for [B, 3, {h}, {w}] input, '
                                 f'got {tuple(logits.shape)}')
            at_centre = logits[:, :, cy, cx]  # [B, K]
            k = at_centre.detach().argmax(dim=1, keepdim=True)  # [B, 1]
            # The images are independent, so one backward of the sum gives each image's own gradient.
            (grad,) = torch.autograd.grad(at_centre.gather(1, k).sum(), x)  # [B, 3, H, W]
            total += grad.abs().sum(dim=1).sum(dim=0).to(torch.float64)
        return (total / n).cpu().numpy()


def erf_radius(heatmap, mass: Sequence[float] = (0.5, 0.95), centre: tuple[int, int] | None = None) -> dict:
    """The smallest centred square holding each share of a non-negative heatmap's mass.

    A square (chessboard radius), not a disk: the theoretical receptive field of stacked k x k
    convolutions is a square, so the radius reads directly against it (one 3 x 3 convolution: radius 1).

    Args:
        heatmap: [H, W] non-negative values (e.g. :func:`effective_receptive_field`).
        mass: shares of the total, each in (0, 1].
        centre: ``(y, x)``; default ``(H // 2, W // 2)`` as in :func:`effective_receptive_field`.

    Returns:
        For each share m, keyed by its percentage ``p = f'{100 * m:g}'`` (``'50'``, ``'95'``):
        ``radius_p``, the smallest r such that the (2r+1) x (2r+1) square centred on ``centre`` (clipped
        to the image) holds at least m of the total, and ``area_p``, that clipped square's pixel count.
        NaN for both when the heatmap's mass is 0.
    """
    a = np.asarray(heatmap, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f'heatmap must be [H, W], got shape {a.shape}')
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError('heatmap must be finite and non-negative')
    shares = tuple(float(m) for m in mass)
    if not shares or any(not 0 < m <= 1 for m in shares):
        raise ValueError(f'mass levels must lie in (0, 1], got {mass!r}')
    h, w = a.shape
    cy, cx = (h // 2, w // 2) if centre is None else (int(centre[0]), int(centre[1]))
    if not (0 <= cy < h and 0 <= cx < w):
        raise ValueError(f'centre {(cy, cx)} outside the {h} x {w} heatmap')
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    ring = np.maximum(np.abs(ys - cy), np.abs(xs - cx))  # [H, W] chessboard distance to the centre
    r_max = int(ring.max())
    cumulative = np.cumsum(np.bincount(ring.ravel(), weights=a.ravel(), minlength=r_max + 1))  # [R]
    sizes = np.cumsum(np.bincount(ring.ravel(), minlength=r_max + 1))  # [R] clipped square areas
    total = cumulative[-1]
    out: dict = {}
    for m in shares:
        key = f'{100 * m:g}'
        if total <= 0:
            out[f'radius_{key}'], out[f'area_{key}'] = math.nan, math.nan
            continue
        # Relative tolerance: a share of 1 must be reached despite the cumulative sum's rounding.
        r = int(np.searchsorted(cumulative, m * total * (1 - 1e-12), side='left'))
        r = min(r, r_max)
        out[f'radius_{key}'], out[f'area_{key}'] = r, int(sizes[r])
    return out
