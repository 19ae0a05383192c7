"""Test-time augmentation: multi-scale and flip, the protocol of mmsegmentation's published ms+flip numbers.

For every ratio r (default 0.5, 0.75, 1.0, 1.25, 1.5, 1.75) the *original* image is resized by r
(bilinear, ``int(size * r + 0.5)``, as mmcv's ``imrescale``), and, with ``flip``, also flipped
horizontally; each version goes through the model's own inference (whole or slide, its test
pipeline is not applied: the ratios replace it, as in mmsegmentation's ``TestTimeAug``); its
logits are cut to the view's own size (the data preprocessor may have padded it to a multiple of
``size_divisor``; ``EncoderDecoder.predict`` cuts that padding off the same way), resized back to
the original size (bilinear, the model's ``align_corners``), unflipped and turned into softmax
probabilities; the prediction is the argmax of their mean.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor, nn

__all__ = ['DEFAULT_RATIOS', 'tta_probabilities']

DEFAULT_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


@torch.no_grad()
def tta_probabilities(model: nn.Module, image: np.ndarray, ratios: Sequence[float] = DEFAULT_RATIOS,
                      flip: bool = True) -> Tensor:
    """Mean softmax probabilities (K, H, W) of an RGB uint8 (H, W, 3) image over scales and flips.

    Args:
        model: an ``EncoderDecoder`` (its data preprocessor normalises, its ``test_cfg`` picks whole
            or slide inference).
        image: the original image.
        ratios: the scale factors.
        flip: also average the horizontally flipped versions.

    Raises:
        ValueError: no ratio, or a ratio that is not a positive number.
    """
    if not ratios or any(not isinstance(r, (int, float)) or r <= 0 for r in ratios):
        raise ValueError(f'TTA ratios must be positive numbers, got {ratios!r}')
    device = next(model.parameters()).device
    h, w = image.shape[:2]
    total = None
    count = 0
    for ratio in ratios:
        size = (max(1, int(w * ratio + 0.5)), max(1, int(h * ratio + 0.5)))
        scaled = image if size == (w, h) else cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        for flipped in ((False, True) if flip else (False,)):
            view = np.ascontiguousarray(scaled[:, ::-1]) if flipped else scaled
            tensor = torch.from_numpy(np.ascontiguousarray(view.transpose(2, 0, 1)))  # [3, h', w']
            data = model.data_preprocessor(dict(inputs=[tensor], data_samples=[{}]), False)
            logits = model.inference(data['inputs'].to(device))  # [1, K, padded h', padded w']
            # The preprocessor may pad (size_divisor) bottom/right: cut that off, as predict does.
            ph, pw = data['data_samples'][0].get('img_shape', logits.shape[-2:])
            logits = logits[:, :, :ph, :pw]  # [1, K, h', w']
            logits = torch.nn.functional.interpolate(logits.float(), size=(h, w), mode='bilinear',
                                                     align_corners=model.align_corners)
            if flipped:
                logits = logits.flip(-1)
            probs = logits.softmax(dim=1)[0]  # [K, H, W]
            total = probs if total is None else total + probs
            count += 1
    return total / count
