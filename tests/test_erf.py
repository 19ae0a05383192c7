"""Effective receptive field: exact supports of small convolution stacks, a global gate, the radius."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from seg.evaluation.erf import effective_receptive_field, erf_radius

H = W = 15  # odd: the centre is (7, 7)


def _images(n=3, seed=0):
    return torch.randn(n, 3, H, W, generator=torch.Generator().manual_seed(seed))


def _conv(cin, cout, seed):
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        conv.weight.copy_(torch.rand(conv.weight.shape, generator=g) + 0.1)  # no zero weight
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=g))
    return conv


def _square(r):
    m = np.zeros((H, W), bool)
    m[7 - r:7 + r + 1, 7 - r:7 + r + 1] = True
    return m


def test_one_3x3_convolution_has_a_3x3_field():
    model = _conv(3, 4, 0).eval()
    erf = effective_receptive_field(model, _images())
    assert erf.shape == (H, W) and erf.dtype == np.float64
    np.testing.assert_array_equal(erf > 0, _square(1))
    # A linear layer: the field is |weight| of the predicted class, summed over channels (here positive).
    x = _images()
    k = model(x)[:, :, 7, 7].argmax(1)
    expected = model.weight.detach()[k].sum(1).mean(0)  # [3, 3]
    np.testing.assert_allclose(erf[6:9, 6:9], expected.double().numpy(), rtol=1e-6)


def test_two_stacked_3x3_convolutions_give_5x5():
    model = nn.Sequential(_conv(3, 5, 1), nn.ReLU(), _conv(5, 4, 2)).eval()
    erf = effective_receptive_field(model, _images(4) + 3.0)  # positive input: the ReLUs pass everything
    np.testing.assert_array_equal(erf > 0, _square(2))
    info = erf_radius(erf, mass=(0.5, 0.95, 1.0))
    assert info['radius_100'] == 2 and info['area_100'] == 25
    assert info['radius_50'] <= info['radius_95'] <= 2


class _Gated(nn.Module):
    """A 3 x 3 convolution scaled by a gate from the global mean (SE-like): x * sigmoid(mean(x))."""

    def __init__(self):
        super().__init__()
        self.conv = _conv(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return y * torch.sigmoid(y.mean(dim=(2, 3), keepdim=True))


def test_global_pooling_gate_reaches_the_whole_image():
    erf = effective_receptive_field(_Gated().eval(), _images())
    assert (erf > 0).all()
    # The local 3 x 3 still dominates the far pixels.
    assert erf[6:9, 6:9].min() > erf[~_square(1)].max()


def test_mean_over_images_batches_and_grad_modes():
    model = nn.Sequential(_conv(3, 5, 4), nn.Tanh(), _conv(5, 3, 5)).eval()
    x = _images(5, seed=1)
    whole = effective_receptive_field(model, x, batch_size=8)
    single = np.mean([effective_receptive_field(model, x[i:i + 1]) for i in range(5)], axis=0)
    np.testing.assert_allclose(whole, single, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(effective_receptive_field(model, x, batch_size=2), whole, rtol=1e-6, atol=1e-12)
    with torch.no_grad():
        np.testing.assert_allclose(effective_receptive_field(model, x), whole, rtol=1e-6, atol=1e-12)
    with torch.inference_mode():  # an evaluation loop's images are inference tensors
        np.testing.assert_allclose(effective_receptive_field(model, x.clone()), whole, rtol=1e-6, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())  # only the input's gradient


def test_other_centre_and_bad_inputs():
    model = _conv(3, 2, 6).eval()
    erf = effective_receptive_field(model, _images(), centre=(0, 14))
    expected = np.zeros((H, W), bool)
    expected[0:2, 13:15] = True  # the 3 x 3 square clipped by the corner
    np.testing.assert_array_equal(erf > 0, expected)
    with pytest.raises(ValueError, match='centre'):
        effective_receptive_field(model, _images(), centre=(15, 0))
    with pytest.raises(ValueError, match='logits'):
        effective_receptive_field(lambda x: x.mean(dim=(2, 3)), _images())
    with pytest.raises(ValueError, match='float tensor'):
        effective_receptive_field(model, np.zeros((1, 3, H, W)))


def test_erf_radius_by_hand():
    a = np.zeros((9, 9))
    a[4, 4] = 1.0
    assert erf_radius(a) == {'radius_50': 0, 'area_50': 1, 'radius_95': 0, 'area_95': 1}
    a = np.zeros((9, 9))
    a[4, 4] = 0.4  # r = 0: 40%
    a[3, 5] = 0.4  # r = 1: 80% in the 3 x 3
    a[2, 4] = 0.15  # r = 2: 95% in the 5 x 5
    a[0, 0] = 0.05  # r = 4: the rest
    assert erf_radius(a) == {'radius_50': 1, 'area_50': 9, 'radius_95': 2, 'area_95': 25}
    assert erf_radius(a, mass=(0.4, 0.96, 1.0)) == {'radius_40': 0, 'area_40': 1, 'radius_96': 4, 'area_96': 81,
                                                    'radius_100': 4, 'area_100': 81}


def test_erf_radius_clipped_and_empty():
    a = np.zeros((6, 10))
    a[0, 0] = 1.0
    a[3, 5] = 1.0  # the centre of a 6 x 10 map is (3, 5)
    out = erf_radius(a, mass=(0.5, 1.0))
    # radius 5 reaches (0, 0); the square rows -2..8, cols 0..10 clipped to 6 x 10 = 60 pixels.
    assert out == {'radius_50': 0, 'area_50': 1, 'radius_100': 5, 'area_100': 60}
    empty = erf_radius(np.zeros((5, 5)))
    assert math.isnan(empty['radius_50']) and math.isnan(empty['area_95'])
    with pytest.raises(ValueError, match='non-negative'):
        erf_radius(-np.ones((3, 3)))
    with pytest.raises(ValueError, match='mass'):
        erf_radius(np.ones((3, 3)), mass=(0.0,))
