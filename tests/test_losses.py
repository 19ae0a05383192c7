"""The losses: segmentation-models-pytorch's Dice, Focal and Lovász beside cross-entropy, chosen per
output key, each skipping ignore_index and checked against smp called directly."""
import pytest
import torch
from segmentation_models_pytorch import losses as smp_losses

from seg.models.losses import CrossEntropyLoss, DiceLoss, FocalLoss, LovaszLoss
from seg.registry import MODELS

IGNORE = 11


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 5, 6, 7, generator=g, requires_grad=True)
    target = torch.randint(0, 5, (2, 6, 7), generator=g)
    target[:, :2] = IGNORE
    return logits, target


@pytest.mark.parametrize('ours, theirs', [
    (DiceLoss(IGNORE), smp_losses.DiceLoss('multiclass', ignore_index=IGNORE)),
    (DiceLoss(IGNORE, smooth=1.0, log_loss=True),
     smp_losses.DiceLoss('multiclass', ignore_index=IGNORE, smooth=1.0, log_loss=True)),
    (FocalLoss(IGNORE), smp_losses.FocalLoss('multiclass', ignore_index=IGNORE)),
    (FocalLoss(IGNORE, gamma=1.0, alpha=0.25), smp_losses.FocalLoss('multiclass', gamma=1.0, alpha=0.25,
                                                                    ignore_index=IGNORE)),
    (LovaszLoss(IGNORE), smp_losses.LovaszLoss('multiclass', ignore_index=IGNORE)),
    (LovaszLoss(IGNORE, per_image=True), smp_losses.LovaszLoss('multiclass', per_image=True, ignore_index=IGNORE)),
])
def test_smp_losses_equal_smp_and_ignore_the_void(ours, theirs):
    logits, target = batch()
    value = ours(logits, target)
    torch.testing.assert_close(value, theirs(logits, target))
    value.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # Ignored pixels do not matter: changing their logits changes nothing.
    other = logits.detach().clone()
    other[:, :, :2] = torch.randn_like(other[:, :, :2]) * 10
    torch.testing.assert_close(ours(other, target), value.detach())
    # All ignored: zero, with a graph.
    zero = ours(logits, torch.full_like(target, IGNORE))
    assert float(zero) == 0.0 and zero.requires_grad
    assert ours.short_name in ('dice', 'focal', 'lovasz')


def test_loss_weight_scales():
    logits, target = batch(1)
    for cls in (CrossEntropyLoss, DiceLoss, FocalLoss, LovaszLoss):
        torch.testing.assert_close(cls(IGNORE, loss_weight=0.5)(logits, target), 0.5 * cls(IGNORE)(logits, target))


def test_losses_per_output_key():
    model = MODELS.build(dict(
        type='EncoderDecoder', num_classes=5, ignore_index=IGNORE,
        backbone=dict(type='DilatedResNet', depth=18, channels=(8, 8, 16, 16)),
        decode_head=dict(type='FCNHead', in_channels=16, channels=8, num_classes=5),
        auxiliary_head=dict(type='FCNHead', in_channels=16, channels=8, num_classes=5, in_index=2),
        losses=dict(out=[dict(type='CrossEntropyLoss'), dict(type='DiceLoss', loss_weight=0.5)],
                    aux=dict(type='LovaszLoss'))))
    assert [type(f).__name__ for f in model.key_losses['out']] == ['CrossEntropyLoss', 'DiceLoss']
    assert all(f.ignore_index == IGNORE for fns in model.key_losses.values() for f in fns)  # the model's
    x = torch.randn(2, 3, 32, 32)
    target = torch.randint(0, 5, (32, 32))
    losses = model.loss(x, [dict(gt_sem_seg=target)] * 2)
    assert set(losses) == {'loss_out_ce', 'loss_out_dice', 'loss_aux', 'acc_seg'}
    total, log_vars = model.parse_losses(losses)
    total.backward()
    with pytest.raises(ValueError, match='model.losses.out must be a loss config dict or a non-empty list'):
        MODELS.build(dict(type='EncoderDecoder', num_classes=5, backbone=dict(type='DilatedResNet', depth=18),
                          decode_head=dict(type='FCNHead', in_channels=512, channels=8, num_classes=5),
                          losses=dict(out=[])))
