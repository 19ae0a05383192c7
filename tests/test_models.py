"""Backbones, heads, losses and the segmentor, parametrized over what is registered."""
import pytest
import torch
from torch import nn

import seg.models  # noqa: F401
from seg.models import heads as heads_module
from seg.models.backbones import DilatedResNet
from seg.models.losses import CrossEntropyLoss, OhemCrossEntropyLoss
from seg.registry import MODELS

HEADS = list(heads_module.__all__)
TINY_CHANNELS = (8, 16, 32, 64)


def tiny_segmentor(head: str = 'CCHead', num_classes: int = 5, **test_cfg) -> nn.Module:
    return MODELS.build(dict(
        type='EncoderDecoder', num_classes=num_classes,
        backbone=dict(type='DilatedResNet', depth=18, channels=TINY_CHANNELS, output_stride=8),
        decode_head=dict(type=head, in_channels=64, channels=16, num_classes=num_classes, in_index=3),
        auxiliary_head=dict(type='FCNHead', in_channels=32, channels=8, num_classes=num_classes,
                            num_convs=1, concat_input=False, in_index=2),
        test_cfg=test_cfg or dict(mode='whole')))


@pytest.mark.parametrize('depth', [18, 50])
@pytest.mark.parametrize('output_stride', [8, 16])
def test_backbone_strides_and_channels(depth, output_stride):
    net = DilatedResNet(depth=depth, output_stride=output_stride,
                        channels=TINY_CHANNELS if depth == 18 else (8, 16, 32, 64))
    feats = net(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == net.out_channels
    for f, stride in zip(feats, net.strides):
        assert f.shape[-2:] == (64 // stride, 64 // stride)
    assert net.strides[-1] == output_stride


def test_backbone_deep_stem_layout():
    deep = DilatedResNet(depth=18, deep_stem=True, channels=TINY_CHANNELS)
    plain = DilatedResNet(depth=18, deep_stem=False, channels=TINY_CHANNELS)
    assert isinstance(deep.stem[0], nn.Sequential) and len([m for m in deep.stem[0] if isinstance(m, nn.Conv2d)]) == 3
    assert isinstance(plain.stem[0], nn.Conv2d) and plain.stem[0].kernel_size == (7, 7)


def test_backbone_loads_timm_state_dict_from_file(tmp_path):
    timm = pytest.importorskip('timm')
    src = timm.create_model('resnet18d', num_classes=10)
    path = tmp_path / 'r18d.pth'
    torch.save(src.state_dict(), path)
    net = DilatedResNet(depth=18, deep_stem=True, avg_down=True, pretrained=str(path))
    assert torch.equal(net.stem[0][0].weight, src.conv1[0].weight)
    assert torch.equal(net.layer4[1].conv2.weight, src.layer4[1].conv2.weight)


def test_backbone_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        DilatedResNet(depth=18, pretrained=str(tmp_path / 'missing.pth'))
    path = tmp_path / 'wrong.pth'
    torch.save(DilatedResNet(depth=18, deep_stem=False).state_dict(), path)
    with pytest.raises(ValueError, match='lack|shape'):
        DilatedResNet(depth=18, deep_stem=True, pretrained=str(path))
    with pytest.raises(ValueError, match='depth'):
        DilatedResNet(depth=19)


def test_backbone_timm_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    import timm

    def no_network(*args, **kwargs):
        raise OSError('offline')

    monkeypatch.setattr(timm, 'create_model', no_network)
    with pytest.raises(RuntimeError, match="pretrained='/path/to/weights.pth'"):
        DilatedResNet(depth=18, pretrained='timm')


def _contract_head(head):
    """The head on a ResNet's four features (8, 8, 16, 32 channels), reading the last one -- and, where
    it reads more (OCRNet, ANN: ``skeleton_inputs``), stage 3 as an auxiliary head would."""
    cfg = dict(type=head, in_channels=32, channels=16, num_classes=4, in_index=3)
    hook = getattr(MODELS.get(head), 'skeleton_inputs', None)
    if hook is not None:
        cfg.update(hook(dict(in_channels=32, channels=16, in_index=3), dict(in_channels=16, channels=8, in_index=2)))
    return MODELS.build(cfg)


def _features(batch, h, w, grad=False):
    return [torch.randn(batch, c, h, w, requires_grad=grad) for c in (8, 8, 16, 32)]


@pytest.mark.parametrize('head', HEADS)
def test_head_contract(head):
    module = _contract_head(head)
    feats = _features(2, 7, 9, grad=True)
    outs = module(feats)
    assert isinstance(outs, dict) and 'out' in outs
    assert set(outs) == set(getattr(module, 'outputs', ('out',))), 'training returns every declared output'
    for key, value in outs.items():
        assert value.shape == (2, 4, 7, 9), key
        assert torch.isfinite(value).all()
        grads = torch.autograd.grad(value.sum(), feats, retain_graph=True, allow_unused=True)
        assert sum(g.abs().sum() for g in grads if g is not None) > 0, f'{key} carries no gradient'
    module.eval()
    assert module(_features(1, 5, 3))['out'].shape == (1, 4, 5, 3)


@pytest.mark.parametrize('recurrence', [1, 2, 3])
def test_cchead_recurrence_shares_weights(recurrence):
    head = MODELS.build(dict(type='CCHead', in_channels=16, channels=16, num_classes=3, recurrence=recurrence))
    calls = []
    head.context.query.register_forward_hook(lambda *a: calls.append(1))  # once per pass
    head([torch.randn(1, 16, 6, 6)])
    assert len(calls) == recurrence
    n_single = sum(p.numel() for p in MODELS.build(dict(
        type='CCHead', in_channels=16, channels=16, num_classes=3, recurrence=1)).parameters())
    assert sum(p.numel() for p in head.parameters()) == n_single
    assert head.context.gamma.item() == 0.0


def test_segmentor_loss_keys_and_weights():
    model = tiny_segmentor(num_classes=5)
    model.loss_weights = {'out': 1.0, 'aux': 0.4}
    x = torch.randn(2, 3, 32, 48)
    gt = torch.randint(0, 5, (2, 32, 48))
    gt[:, :4] = 255
    losses = model.loss(x, [dict(gt_sem_seg=g) for g in gt])
    assert set(losses) == {'loss_out', 'loss_aux', 'acc_seg'}
    model.loss_weights = {'out': 1.0, 'aux': 0.0}
    assert set(model.loss(x, [dict(gt_sem_seg=g) for g in gt])) == {'loss_out', 'acc_seg'}


def test_segmentor_predict_resizes_to_label_and_original_size():
    model = tiny_segmentor().eval()
    x = torch.randn(1, 3, 32, 48)
    out = model.predict(x, [dict(gt_sem_seg=torch.zeros(64, 96, dtype=torch.long))])
    assert out[0]['pred_sem_seg'].shape == (64, 96)
    out = model.predict(x, [dict(ori_shape=(20, 30))])
    assert out[0]['pred_sem_seg'].shape == (20, 30)


def test_slide_inference_equals_whole_when_one_crop_covers_the_image():
    model = tiny_segmentor().eval()
    x = torch.randn(1, 3, 32, 48)
    whole = model.inference(x)
    model.test_cfg = dict(mode='slide', crop_size=(32, 48), stride=(16, 24))
    assert torch.allclose(model.inference(x), whole, atol=1e-5)


def test_slide_inference_averages_overlaps():
    model = tiny_segmentor().eval()
    model.test_cfg = dict(mode='slide', crop_size=(16, 16), stride=(8, 8))
    seen = []
    original = model.forward_logits

    def ones(inputs):
        seen.append(inputs.shape[-2:])
        out = original(inputs)
        return {'out': torch.ones_like(out['out'])}

    model.forward_logits = ones
    logits = model.inference(torch.randn(1, 3, 24, 40))
    assert torch.allclose(logits, torch.ones_like(logits))  # averaging ones gives ones everywhere
    assert len(seen) == 2 * 4 and all(tuple(s) == (16, 16) for s in seen)
    # images smaller than the crop are padded, not failed
    assert model.inference(torch.randn(1, 3, 10, 12)).shape[-2:] == (10, 12)


def test_num_classes_mismatch_is_clear():
    with pytest.raises(ValueError, match='num_classes'):
        MODELS.build(dict(type='EncoderDecoder', num_classes=7,
                          backbone=dict(type='DilatedResNet', depth=18, channels=TINY_CHANNELS),
                          decode_head=dict(type='FCNHead', in_channels=64, channels=8, num_classes=5)))


def test_unknown_type_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown model type 'CCHaed'.*CCHead.*FCNHead"):
        MODELS.build(dict(type='CCHaed', in_channels=8, channels=8, num_classes=2))


def test_cross_entropy_ignores_ignore_index():
    logits = torch.randn(2, 4, 5, 5)
    target = torch.randint(0, 4, (2, 5, 5))
    target[0] = 255
    ref = nn.functional.cross_entropy(logits[1:], target[1:])
    assert torch.allclose(CrossEntropyLoss()(logits, target), ref)
    all_ignored = torch.full_like(target, 255)
    assert CrossEntropyLoss()(logits.requires_grad_(), all_ignored).item() == 0.0


def test_ohem_keeps_hard_pixels_and_at_least_min_kept():
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 8, 8) * 3
    target = torch.randint(0, 3, (1, 8, 8))
    prob = logits.softmax(1).gather(1, target.unsqueeze(1)).squeeze(1)
    hard = prob < 0.7
    loss = OhemCrossEntropyLoss(thresh=0.7, min_kept=1)(logits, target)
    ce = nn.functional.cross_entropy(logits, target, reduction='none')
    assert torch.allclose(loss, ce[hard].mean(), atol=1e-6)
    loss_all = OhemCrossEntropyLoss(thresh=0.01, min_kept=64)(logits, target)
    assert torch.allclose(loss_all, ce.mean(), atol=1e-6)
    with pytest.raises(ValueError, match='thresh'):
        OhemCrossEntropyLoss(thresh=0)


def test_dahead_three_outputs_in_training_only_out_in_eval():
    head = MODELS.build(dict(type='DAHead', in_channels=16, channels=16, num_classes=3))
    x = torch.randn(2, 16, 5, 7, requires_grad=True)
    outs = head([x])
    assert set(outs) == {'out', 'pam', 'cam'}
    for key in ('out', 'pam', 'cam'):
        assert outs[key].shape == (2, 3, 5, 7)
        params = [p for n, p in head.named_parameters() if n.startswith(f'{key}_cls') or
                  (key == 'out' and n.startswith('cls'))]
        grads = torch.autograd.grad(outs[key].sum(), params + [x], retain_graph=True)
        assert all(g.abs().sum() > 0 for g in grads), key
    head.eval()
    assert set(head([x])) == {'out'}
    assert head.pam.gamma.item() == 0.0 and head.cam.gamma.item() == 0.0


def test_segmentor_supervises_every_head_output():
    model = MODELS.build(dict(
        type='EncoderDecoder', num_classes=3,
        backbone=dict(type='DilatedResNet', depth=18, channels=TINY_CHANNELS),
        decode_head=dict(type='DAHead', in_channels=64, channels=16, num_classes=3),
        loss_weights=dict(out=1.0, pam=0.5, cam=0.25)))
    losses = model.loss(torch.randn(2, 3, 32, 32), [dict(gt_sem_seg=torch.randint(0, 3, (32, 32)))] * 2)
    assert set(losses) == {'loss_out', 'loss_pam', 'loss_cam', 'acc_seg'}


@pytest.mark.parametrize('mode', ['embedded_gaussian', 'gaussian', 'dot_product', 'concatenation'])
def test_non_local_modes_match_their_formula(mode):
    from seg.models.attention import NonLocal

    torch.manual_seed(0)
    block = NonLocal(8, reduction=2, mode=mode, norm='none', query_chunk=5).double()
    nn.init.normal_(block.conv_out.weight)  # the zero init would hide the attention
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    n = 12
    g = block.g(x).flatten(2)  # [B, Ci, N]
    if mode == 'gaussian':
        f = torch.einsum('bci,bcj->bij', x.flatten(2), x.flatten(2)).softmax(-1)
    else:
        theta, phi = block.theta(x).flatten(2), block.phi(x).flatten(2)
        if mode == 'embedded_gaussian':
            f = (torch.einsum('bci,bcj->bij', theta, phi) / 2.0).softmax(-1)  # 1/sqrt(4)
        elif mode == 'dot_product':
            f = torch.einsum('bci,bcj->bij', theta, phi) / n
        else:
            w = block.concat_project.weight.view(-1)
            pair = torch.cat([theta[:, :, :, None].expand(-1, -1, -1, n),
                              phi[:, :, None, :].expand(-1, -1, n, -1)], dim=1)  # [B, 2Ci, N, N]
            f = torch.relu(torch.einsum('c,bcij->bij', w, pair)) / n
    y = torch.einsum('bij,bcj->bci', f, g).reshape(2, 4, 3, 4)
    expected = x + block.conv_out(y)
    assert torch.allclose(block(x), expected, atol=1e-10)


def test_non_local_starts_as_identity():
    from seg.models.attention import NonLocal

    block = NonLocal(8).eval()
    x = torch.randn(1, 8, 4, 4)
    assert torch.allclose(block(x), x)
    with pytest.raises(ValueError, match='mode'):
        NonLocal(8, mode='cosine')
