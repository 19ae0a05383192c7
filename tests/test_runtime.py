"""Runtime choices: batch split across processes, SyncBN only with CUDA, mixed precision on CPU."""
import pytest
import torch
from mmengine.config import Config
from torch import nn

from seg.engine.config import resolve_runtime
from seg.engine.optim_wrapper import AutoAmpOptimWrapper


def test_total_batch_size_is_split_across_processes():
    cfg = Config(dict(total_batch_size=8, train_dataloader=dict(batch_size=2), sync_bn='torch'))
    assert resolve_runtime(cfg.copy(), world_size=1).train_dataloader.batch_size == 8
    assert resolve_runtime(cfg.copy(), world_size=4).train_dataloader.batch_size == 2
    with pytest.raises(ValueError, match='total_batch_size=8 is not divisible by the 3 processes'):
        resolve_runtime(cfg.copy(), world_size=3)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU choice')
def test_sync_bn_is_dropped_without_cuda():
    cfg = Config(dict(train_dataloader=dict(batch_size=2), sync_bn='torch'))
    assert resolve_runtime(cfg).sync_bn is None


def test_amp_wrapper_runs_bf16_autocast_on_cpu():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    wrapper = AutoAmpOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    before = model[0].weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(2, 3, 8, 8))
        assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().pow(2).mean())
    assert not torch.equal(before, model[0].weight)
    assert wrapper.cast_dtype == torch.bfloat16 and wrapper.loss_scaler is None
    state = wrapper.state_dict()
    AutoAmpOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)).load_state_dict(state)
    with pytest.raises(ValueError, match='dtype'):
        AutoAmpOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), dtype='int8')
