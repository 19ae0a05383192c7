"""cityscapesscripts' own pixel-level evaluation of labelId result files, for the tests that prove
``seg``'s Cityscapes results and metric equal the benchmark's (only tests use it).

cityscapesscripts 2.3.0 still calls ``np.in1d``, which numpy 2.4 removed; the evaluator is given a
numpy namespace with ``in1d`` restored as ``np.isin`` (the function numpy replaced it with), inside
that module only.
"""
from __future__ import annotations

import contextlib
import io
import types

import numpy as np


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
