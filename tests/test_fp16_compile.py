"""fp16 training with the gradient scaler (scaled backward, unscale before clipping, the skipped step of an
overflow, the scaler's state across a resume), and ``torch.compile`` inference against the eager model.

:class:`seg.engine.optim_wrapper.AutoAmpOptimWrapper` refuses fp16 on CPU (its ``_setup`` makes a CUDA
GradScaler only), although ``torch.amp.GradScaler('cpu')`` and fp16 autocast run on CPU in this torch.
The CPU tests give the wrapper a CPU scaler in place of ``_setup``'s, which runs every other line of the
scaler path; the ``_setup`` path itself (and the scaler state kept for it on resume) is tested on CUDA.
"""
import copy
import os

import pytest
import torch
from mmengine.logging import MessageHub
from torch import nn

from seg.engine.optim_wrapper import AutoAmpOptimWrapper

from .conftest import ROOT, randomize

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


def mlp(device: str = 'cpu') -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).to(device)


def batch(seed: int, device: str = 'cpu', scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(6, 8, generator=g) * scale).to(device), torch.randn(6, 4, generator=g).to(device)


def cpu_fp16_wrapper(model: nn.Module, clip: dict | None = None, init_scale: float = 2.0 ** 12,
                     growth_interval: int = 2000) -> AutoAmpOptimWrapper:
    """The fp16 wrapper as ``_setup`` makes it on CUDA, with a CPU GradScaler."""
    wrapper = AutoAmpOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), dtype='float16',
                                  clip_grad=clip)
    wrapper.cast_dtype, wrapper.device_type = torch.float16, 'cpu'
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=init_scale, growth_interval=growth_interval)
    return wrapper


def train_step(model: nn.Module, wrapper, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with wrapper.optim_context(model):
        out = model(x)
        assert out.dtype == torch.float16  # under fp16 autocast
        loss = ((out.float() - y) ** 2).mean()
    wrapper.update_params(loss)
    return loss.detach()


def reference_step(model: nn.Module, optimizer, x, y, max_norm: float | None = None) -> float | None:
    """The same step without a scaler: fp16 autocast forward, plain backward, clip, SGD."""
    with torch.autocast('cpu', dtype=torch.float16):
        out = model(x)
    loss = ((out.float() - y) ** 2).mean()
    loss.backward()
    norm = float(nn.utils.clip_grad_norm_(model.parameters(), max_norm)) if max_norm else None
    optimizer.step()
    optimizer.zero_grad()
    return norm


def params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_fp16_is_refused_on_cpu():
    from seg.engine.precision import resolve_precision

    model = mlp()
    wrapper = AutoAmpOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), dtype='float16')
    with pytest.raises(ValueError, match='fp16 mixed precision needs a CUDA device'):
        with wrapper.optim_context(model):
            pass
    with pytest.raises(ValueError, match='fp16 mixed precision needs a CUDA device'):
        resolve_precision('fp16', 'cpu')


@pytest.mark.parametrize('max_norm', [None, 0.05])
def test_scaled_steps_equal_unscaled_ones_and_clip_the_unscaled_gradient(max_norm):
    model, ref = mlp(), mlp()
    wrapper = cpu_fp16_wrapper(model, dict(max_norm=max_norm) if max_norm else None, growth_interval=2)
    optimizer = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    hub = MessageHub.get_current_instance()
    for seed in range(3):
        x, y = batch(seed)
        train_step(model, wrapper, x, y)
        norm = reference_step(ref, optimizer, x, y, max_norm)
        if max_norm:
            assert norm > 10 * max_norm  # the clip is active
            # The norm clipped (and logged) is that of the true gradient, not of the scaled one.
            assert hub.get_scalar('train/grad_norm').current() == pytest.approx(norm, rel=1e-3)
        for p, q in zip(model.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5)
        assert all(p.grad is None or not p.grad.any() for p in model.parameters())  # zeroed after the step
    # growth_interval=2: two steps without overflow double the scale once, the third leaves it.
    assert wrapper.loss_scaler.get_scale() == 2.0 ** 13


@pytest.mark.parametrize('max_norm', [None, 1.0])
def test_an_overflow_skips_the_step_and_halves_the_scale(max_norm):
    model = mlp()
    wrapper = cpu_fp16_wrapper(model, dict(max_norm=max_norm) if max_norm else None, init_scale=2.0 ** 16)
    before = params(model)
    x, y = batch(0, scale=1e3)  # scaled by 2^16, the fp16 gradients overflow
    loss = train_step(model, wrapper, x, y)
    assert torch.isfinite(loss)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # nothing updated
    assert wrapper.loss_scaler.get_scale() == 2.0 ** 15
    assert not wrapper.optimizer.state  # no momentum buffer either: the optimizer never stepped
    x, y = batch(1)
    train_step(model, wrapper, x, y)  # a normal batch then steps
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert wrapper.loss_scaler.get_scale() == 2.0 ** 15


def test_scaler_state_is_saved_and_restored_on_resume():
    """Train 2 steps, save; 1 more step. Resumed from the save, that step is the same, scale included."""
    model = mlp()
    wrapper = cpu_fp16_wrapper(model, dict(max_norm=1.0), growth_interval=3)
    for seed in range(2):
        train_step(model, wrapper, *batch(seed))
    saved_model, saved = copy.deepcopy(model.state_dict()), copy.deepcopy(wrapper.state_dict())
    assert saved['loss_scaler']['scale'] == 2.0 ** 12 and saved['loss_scaler']['_growth_tracker'] == 2
    train_step(model, wrapper, *batch(2))
    assert wrapper.loss_scaler.get_scale() == 2.0 ** 13  # the third good step grew it

    # Before the first step (the runner loads the checkpoint then) the wrapper has no scaler yet:
    # the state waits for the one _setup makes.
    pending = AutoAmpOptimWrapper(torch.optim.SGD(mlp().parameters(), lr=0.1, momentum=0.9), dtype='float16')
    pending.load_state_dict(copy.deepcopy(saved))
    assert pending.loss_scaler is None and pending._pending_scaler_state == saved['loss_scaler']

    resumed = mlp()
    resumed.load_state_dict(saved_model)
    again = cpu_fp16_wrapper(resumed, dict(max_norm=1.0), init_scale=1.0, growth_interval=3)
    again.load_state_dict(copy.deepcopy(saved))
    assert again.loss_scaler.state_dict() == saved['loss_scaler']
    assert again.optimizer.state_dict()['state'].keys() == wrapper.optimizer.state_dict()['state'].keys()
    train_step(resumed, again, *batch(2))
    assert again.loss_scaler.get_scale() == 2.0 ** 13  # the growth tracker came back too
    for p, q in zip(resumed.parameters(), model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.gpu
@cuda
def test_fp16_scaler_on_cuda_steps_clips_and_resumes():
    """The wrapper's own path: _setup makes the CUDA GradScaler, and a state loaded before it is applied."""
    model = mlp('cuda')
    wrapper = AutoAmpOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), dtype='float16',
                                  clip_grad=dict(max_norm=1.0))
    before = params(model)
    x, y = batch(0, 'cuda', scale=1e3)
    with wrapper.optim_context(model):
        loss = ((model(x).float() - y) ** 2).mean()
    wrapper.update_params(loss)
    assert wrapper.loss_scaler is not None and wrapper.cast_dtype == torch.float16
    if wrapper.loss_scaler.get_scale() < 2.0 ** 16:  # the default 2^16 overflowed on that batch: skipped
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    for seed in range(1, 5):  # an overflow halves the scale and skips the step: some of these step
        x, y = batch(seed, 'cuda')
        with wrapper.optim_context(model):
            loss = ((model(x).float() - y) ** 2).mean()
        wrapper.update_params(loss)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    saved_model, saved = copy.deepcopy(model.state_dict()), copy.deepcopy(wrapper.state_dict())
    assert 'loss_scaler' in saved

    x, y = batch(3, 'cuda')
    resumed = mlp('cuda')
    resumed.load_state_dict(saved_model)
    again = AutoAmpOptimWrapper(torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9), dtype='float16',
                                clip_grad=dict(max_norm=1.0))
    again.load_state_dict(copy.deepcopy(saved))
    for m, w in ((model, wrapper), (resumed, again)):
        with w.optim_context(m):
            loss = ((m(x).float() - y) ** 2).mean()
        if w is again:
            assert again.loss_scaler.state_dict() == saved['loss_scaler']  # restored by _setup
        w.update_params(loss)
    assert again.loss_scaler.state_dict() == wrapper.loss_scaler.state_dict()
    for p, q in zip(resumed.parameters(), model.parameters()):
        torch.testing.assert_close(p, q)


# ------------------------------------------------------------------------------- torch.compile
def tiny_demo_model() -> nn.Module:
    from seg.apis.model_io import build_model
    from seg.engine.config import load_config

    cfg = load_config(os.path.join(ROOT, 'configs', 'demo_ccnet.py'))
    cfg.model.backbone.channels = (8, 8, 16, 16)
    cfg.model.decode_head = dict(cfg.model.decode_head, in_channels=16, channels=16)
    cfg.model.auxiliary_head = dict(cfg.model.auxiliary_head, in_channels=16, channels=8)
    return randomize(build_model(cfg)).eval()


@pytest.mark.slow  # inductor compiles C++ for the CPU: ~30-70 s on 2 cores with a cold cache
def test_compiled_model_matches_the_eager_one_on_cpu():
    from seg.apis.inference import fast_model
    from seg.engine.precision import resolve_precision

    model = tiny_demo_model()
    eager = copy.deepcopy(model)
    compiled = fast_model(model, resolve_precision('fp32', 'cpu'), fold_bn=True, compile=True)
    assert isinstance(compiled.backbone, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(compiled.decode_head, torch._dynamo.eval_frame.OptimizedModule)
    image = torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = eager.data_preprocessor(dict(inputs=[image], data_samples=[{}]), False)
    with torch.no_grad():
        expected = eager(data['inputs'], mode='tensor')
        got = compiled(data['inputs'], mode='tensor')
        labels = compiled.predict(data['inputs'], data['data_samples'])[0]['pred_sem_seg']
    assert got.shape == expected.shape == (1, 9, 32, 48)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(labels, expected.argmax(1)[0])
