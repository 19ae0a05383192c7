"""TTA and ``predict`` agree when the data preprocessor pads to a multiple of ``size_divisor``: both cut
the padding off the logits before resizing them (issue 17)."""
import os

import numpy as np
import pytest
import torch

from seg.apis.model_io import build_model
from seg.engine.config import load_config
from seg.models.tta import tta_probabilities

from .conftest import ROOT, randomize


def tiny_padding_model(mode: str) -> torch.nn.Module:
    cfg = load_config(os.path.join(ROOT, 'configs', 'demo_ccnet.py'))
    cfg.model.backbone.channels = (8, 8, 16, 16)
    cfg.model.decode_head = dict(cfg.model.decode_head, in_channels=16, channels=16)
    cfg.model.auxiliary_head = dict(cfg.model.auxiliary_head, in_channels=16, channels=8)
    cfg.model.data_preprocessor = dict(type='SegDataPreprocessor', size_divisor=32)
    cfg.model.test_cfg = (dict(mode='whole', return_logits=True) if mode == 'whole' else
                          dict(mode='slide', crop_size=(32, 32), stride=(24, 24), return_logits=True))
    return randomize(build_model(cfg)).eval()


@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_tta_at_ratio_one_without_flip_equals_predict_with_size_divisor_padding(mode):
    model = tiny_padding_model(mode)
    assert model.data_preprocessor.size_divisor == 32
    h, w = 45, 70  # neither a multiple of 32: padded to 64 x 96
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)

    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    data = model.data_preprocessor(dict(inputs=[tensor], data_samples=[{}]), False)
    assert tuple(data['inputs'].shape[-2:]) == (64, 96)  # the padding is really there
    assert data['data_samples'][0]['img_shape'] == (h, w)
    with torch.no_grad():
        result = model.predict(data['inputs'], data['data_samples'])[0]
    assert tuple(result['pred_sem_seg'].shape) == (h, w)

    probs = tta_probabilities(model, image, ratios=[1.0], flip=False)
    assert tuple(probs.shape) == (model.num_classes, h, w)
    torch.testing.assert_close(probs, result['seg_logits'].softmax(0), rtol=1e-5, atol=1e-6)
    assert torch.equal(probs.argmax(0), result['pred_sem_seg'])


def predict_probs(model, image: np.ndarray) -> torch.Tensor:
    """softmax of ``predict``'s logits (K, H, W) for one RGB uint8 image, through the preprocessor."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    data = model.data_preprocessor(dict(inputs=[tensor], data_samples=[{}]), False)
    with torch.no_grad():
        return model.predict(data['inputs'], data['data_samples'])[0]['seg_logits'].softmax(0)


def test_tta_flip_with_size_divisor_padding_averages_predict_of_both_views():
    """The flipped view is padded on its right, which is the image's left once unflipped: the padding
    must go before the flip back, so the average is that of predict on the image and on its mirror."""
    model = tiny_padding_model('whole')
    h, w = 45, 70
    image = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    expected = (predict_probs(model, image) + predict_probs(model, image[:, ::-1]).flip(-1)) / 2
    torch.testing.assert_close(tta_probabilities(model, image, ratios=[1.0], flip=True), expected,
                               rtol=1e-5, atol=1e-6)
