"""A NaN loss stops training with the iteration and the loss terms, or skips the step when asked."""
import pytest
import torch

from .conftest import ROOT

LOSS_MODULE = '''
import torch
from torch import nn
from seg.registry import MODELS


@MODELS.register_module()
class NanAtThirdCall(nn.Module):
    """Cross-entropy, except NaN at its third call (training step 3)."""

    short_name = 'nan3'

    def __init__(self, ignore_index=255):
        super().__init__()
        self.ignore_index, self.calls = ignore_index, 0

    def forward(self, logits, target):
        self.calls += 1
        loss = nn.functional.cross_entropy(logits, target, ignore_index=self.ignore_index)
        return loss * float('nan') if self.calls == 3 else loss
'''

CONFIG = """
_base_ = ['{root}/configs/demo_ccnet.py']
custom_imports = dict(imports=['nan_loss_{tag}'], allow_failed_imports=False)
data_root = '{data}'
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, num_images=4, img_size=(32, 64), pipeline=[]))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, num_images=2, img_size=(32, 64), pipeline=[]))
test_dataloader = val_dataloader
model = dict(backbone=dict(channels=(8, 8, 16, 16)), nonfinite_loss='{policy}',
             decode_head=dict(in_channels=16, channels=8), auxiliary_head=None, loss_weights=dict(out=1.0),
             loss=dict(type='NanAtThirdCall'))
max_iters = 4
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='SegTrainLoop', max_iters=max_iters, val_interval=100)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1, max_keep_ckpts=10))
"""


def write(tmp_path, monkeypatch, policy):
    tag = policy
    (tmp_path / f'nan_loss_{tag}.py').write_text(LOSS_MODULE.replace('NanAtThirdCall', f'NanAtThirdCall{tag}'))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / f'nan_{policy}.py'
    path.write_text(CONFIG.format(root=ROOT, data=tmp_path / 'synthetic', policy=policy, tag=tag)
                    .replace("type='NanAtThirdCall'", f"type='NanAtThirdCall{tag}'"))
    return str(path)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from seg.apis import train
    from seg.engine.checkpoint import load_checkpoint

    work = tmp_path / 'work'
    with pytest.raises(FloatingPointError, match=r'non-finite loss at iteration 3 \(loss=nan, loss_out=nan'):
        train(write(tmp_path, monkeypatch, 'stop'), work_dir=str(work))
    assert sorted(p.name for p in work.glob('iter_*.pth')) == ['iter_1.pth', 'iter_2.pth']
    assert load_checkpoint(work / 'iter_2.pth')['meta']['iter'] == 2


def test_skip_policy_skips_only_that_step(tmp_path, monkeypatch):
    from seg.apis import train
    from seg.engine.checkpoint import load_checkpoint

    work = tmp_path / 'work'
    train(write(tmp_path, monkeypatch, 'skip'), work_dir=str(work))
    before, after, later = (load_checkpoint(work / f'iter_{i}.pth') for i in (2, 3, 4))
    params = [k for k in before['state_dict'] if 'running' not in k and 'num_batches' not in k]
    assert all(torch.equal(before['state_dict'][k], after['state_dict'][k]) for k in params)
    assert not all(torch.equal(after['state_dict'][k], later['state_dict'][k]) for k in params)
    assert all(torch.isfinite(later['state_dict'][k]).all() for k in params)


def test_skip_needs_a_wrapper_that_can_skip(tmp_path, monkeypatch):
    from seg.apis.train import build_runner

    with pytest.raises(ValueError, match="optim_wrapper.type='OptimWrapper' cannot"):
        build_runner(write(tmp_path, monkeypatch, 'skip'), work_dir=str(tmp_path / 'w'),
                     cfg_options={'optim_wrapper.type': 'OptimWrapper'})
