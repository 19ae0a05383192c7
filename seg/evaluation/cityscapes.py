"""Cityscapes results as the benchmark's own tools see them: labelId PNGs and cityscapesscripts'
pixel-level evaluation.

The Cityscapes Dataset for Semantic Urban Scene Understanding (Cordts et al., CVPR 2016),
https://arxiv.org/abs/1604.01685 -- https://www.cityscapes-dataset.com

A prediction in train ids (0..18) is written as ``<city>_<seq>_<frame>_leftImg8bit.png`` holding
**labelIds** (cityscapesscripts' label table maps each train id back), the files the test server
takes. :func:`evaluate_label_files` runs cityscapesscripts' own evaluator
(``evalPixelLevelSemanticLabeling``) on such files. cityscapesscripts 2.3.0 still calls
``np.in1d``, which numpy 2.4 removed; the evaluator is given a numpy namespace with ``in1d``
restored as ``np.isin`` (the function numpy replaced it with), inside that module only.
"""
from __future__ import annotations

import contextlib
import io
import os
import types

import cv2
import numpy as np

from seg.fileio import output_path

__all__ = ['TRAIN_ID_TO_LABEL_ID', 'evaluate_label_files', 'result_name', 'to_label_ids', 'write_result']


def _train_to_label() -> np.ndarray:
    from cityscapesscripts.helpers.labels import labels

    lut = np.zeros(256, dtype=np.uint8)  # anything else -> 0 ('unlabeled')
    for label in labels:
        if 0 <= label.trainId < 255:
            lut[label.trainId] = label.id
    return lut


TRAIN_ID_TO_LABEL_ID = _train_to_label()
"""train id (0..18) -> Cityscapes labelId, from cityscapesscripts' label table."""


def to_label_ids(pred: np.ndarray) -> np.ndarray:
    """(H, W) train ids -> (H, W) uint8 labelIds."""
    pred = np.asarray(pred)
    if pred.min() < 0 or pred.max() > 18:
        raise ValueError(f'Cityscapes predictions hold train ids 0..18, got values in [{pred.min()}, {pred.max()}]')
    return TRAIN_ID_TO_LABEL_ID[pred.astype(np.int64)]


def result_name(img_path: str) -> str:
    """The result file of an image: ``<city>_<seq>_<frame>_leftImg8bit.png``."""
    return os.path.splitext(os.path.basename(img_path))[0] + '.png'


def write_result(pred: np.ndarray, img_path: str, out_dir: str) -> str:
    """Write the labelId PNG of a train-id prediction; returns its path."""
    path = str(output_path(out_dir, result_name(img_path)))
    if not cv2.imwrite(path, to_label_ids(pred)):
        raise OSError(f'could not write {path!r}')
    return path


class _NumpyWithIn1d(types.ModuleType):
    """numpy, plus ``in1d`` (removed in numpy 2.4) as ``isin``."""

    def __init__(self) -> None:
        super().__init__('numpy')

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def in1d(ar1, ar2, assume_unique=False, invert=False):
        return np.isin(np.asarray(ar1).ravel(), ar2, assume_unique=assume_unique, invert=invert)


def evaluate_label_files(predictions: list[str], ground_truths: list[str]) -> dict:
    """cityscapesscripts' pixel-level evaluation of labelId predictions against ``*_gtFine_labelIds.png``.

    Returns:
        ``mIoU`` (the mean class IoU, a fraction, as cityscapesscripts computes it), ``IoU`` (per
        class name) and cityscapesscripts' full result dict under ``raw``.
    """
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs

    if len(predictions) != len(ground_truths) or not predictions:
        raise ValueError(f'{len(predictions)} predictions for {len(ground_truths)} ground truths')
    args = cs.CArgs() if hasattr(cs, 'CArgs') else cs.args
    for key, value in vars(cs.args).items():
        setattr(args, key, value)
    args.evalInstLevelScore = False  # needs the instanceIds files; the pixel level does not
    args.evalPixelAccuracy = True
    args.JSONOutput = False
    args.quiet = True
    args.colorized, args.bold, args.nocol = False, '', ''
    saved = cs.np
    cs.np = _NumpyWithIn1d() if not hasattr(np, 'in1d') else np
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            raw = cs.evaluateImgLists(list(predictions), list(ground_truths), args)
    finally:
        cs.np = saved
    scores = {k: float(v) for k, v in raw['classScores'].items()}
    return dict(mIoU=float(raw['averageScoreClasses']), IoU=scores, raw=raw)
