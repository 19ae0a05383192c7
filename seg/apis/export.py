"""Exporting a checkpoint's model to ONNX, every head included (CCNet's criss-cross too).

The exported graph maps a normalised image batch (B, 3, H, W) to logits at the input size (the
segmentor's ``mode='tensor'``), with height and width dynamic when asked. The config (as data) and
the classes and palette ride in the model's metadata (``seg_config``, ``seg_dataset_meta``), so
``tools/infer.py --onnx`` needs nothing else. MMDeploy lists CCNet as exportable nowhere because of
its ``diag(-inf)`` mask; here the mask compares two ranges (:mod:`seg.ops.criss_cross`), and the
position attention and the concatenation non-local take their plain forms while exporting.
"""
from __future__ import annotations

import json
import os
import warnings

import torch
from torch import nn

from seg.engine.config_data import config_to_data
from seg.fileio import ensure_dir

from .inference import init_model

__all__ = ['export_onnx']


class _Logits(nn.Module):
    """The segmentor's logits at the input size, the graph ONNX gets."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, mode='tensor')


def export_onnx(ckpt: str, out: str, shape: tuple[int, int] = (512, 1024), dynamic: bool = False,
                config: str | None = None, opset: int = 18) -> str:
    """Write the ONNX model of ``ckpt`` to ``out``.

    Args:
        ckpt: the checkpoint.
        out: the ``.onnx`` file to write.
        shape: (H, W) of the example input (the input size of the graph unless ``dynamic``).
        dynamic: let height and width vary (batch 1).
        config: a config overriding the checkpoint's.
        opset: the ONNX opset.

    Returns:
        ``out``.
    """
    import onnx

    model = init_model(ckpt, config, 'cpu')
    wrapper = _Logits(model).eval()
    x = torch.zeros(1, 3, *shape)
    dims = None
    if dynamic:
        dims = ({2: torch.export.Dim('height', min=32, max=8192), 3: torch.export.Dim('width', min=32, max=8192)},)
    ensure_dir(os.path.dirname(os.path.abspath(out)), 'folder of --out')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        program = torch.onnx.export(wrapper, (x,), dynamo=True, input_names=['input'], output_names=['logits'],
                                    opset_version=opset, dynamic_shapes=dims, verbose=False)
    proto = program.model_proto
    for key, value in (('seg_config', json.dumps(config_to_data(model.cfg))),
                       ('seg_dataset_meta', json.dumps(model.dataset_meta)),
                       ('seg_input', 'normalised RGB (B, 3, H, W): (pixel - mean) / std of the config')):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, out)
    return out
