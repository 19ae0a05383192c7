"""Cityscapes as the benchmark's own tools see it: labelId results files, cityscapesscripts' evaluation of
them equal to tools/eval.py's mIoU, the test split, and multi-scale + flip TTA."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import id2label, labels

from seg.datasets.cityscapes import TRAIN_ID_TO_LABEL_ID, result_name, to_label_ids

from .cityscapes_eval import evaluate_label_files
from .conftest import ROOT, randomize

CONFIG = """
_base_ = ['{root}/configs/fcn/fcn_r50-d8_4xb2-80k_cityscapes-512x1024.py']
data_root = '{data}'
model = dict(backbone=dict(depth=18, channels=(8, 8, 16, 16), pretrained=None),
             decode_head=dict(in_channels=16, channels=8), auxiliary_head=dict(in_channels=16, channels=8))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root, pipeline=[]))
test_dataloader = val_dataloader
"""
CITIES = {'aachen': 2, 'bremen': 1}
IDS = [lbl.id for lbl in labels if 0 <= lbl.id <= 33]  # every labelId a gtFine_labelIds.png can hold


def write_cityscapes(root, rng, h=48, w=96):
    """The real layout: leftImg8bit/{val,test}/<city>/, gtFine/val/<city>/ with labelIds and the
    labelTrainIds that csCreateTrainIdLabelImgs makes from them."""
    train_of = np.array([id2label[i].trainId if id2label[i].trainId != -1 else 255 for i in range(34)], np.uint8)
    gts = []
    for split in ('val', 'test'):
        for city, n in CITIES.items():
            (root / 'leftImg8bit' / split / city).mkdir(parents=True, exist_ok=True)
            if split == 'val':
                (root / 'gtFine' / split / city).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                name = f'{city}_000000_{k:06d}'
                ids = rng.choice(IDS, size=(h, w)).astype(np.uint8)
                ids[: h // 3] = 7  # much road, so that road is predicted right somewhere
                image = (ids[..., None] * 7 + rng.integers(0, 30, (h, w, 3))).astype(np.uint8)
                cv2.imwrite(str(root / 'leftImg8bit' / split / city / f'{name}_leftImg8bit.png'), image)
                if split == 'val':
                    gt = root / 'gtFine' / split / city / f'{name}_gtFine_labelIds.png'
                    cv2.imwrite(str(gt), ids)
                    cv2.imwrite(str(root / 'gtFine' / split / city / f'{name}_gtFine_labelTrainIds.png'), train_of[ids])
                    gts.append(str(gt))
    return sorted(gts)


@pytest.fixture(scope='module')
def cityscapes(tmp_path_factory):
    from seg.apis.model_io import build_model
    from seg.engine.config import load_config

    tmp = tmp_path_factory.mktemp('cityscapes')
    gts = write_cityscapes(tmp / 'cityscapes', np.random.default_rng(0))
    config = tmp / 'tiny_cityscapes.py'
    config.write_text(CONFIG.format(root=ROOT, data=tmp / 'cityscapes'))
    cfg = load_config(str(config))
    # Every weight random and BN away from identity, so that the labels depend on the image: with
    # weights ~N(0, 0.3) and road's bias +2 the model said road everywhere, in every mode, and whole,
    # slide and TTA results could not be told apart.
    model = randomize(build_model(cfg)).eval()
    with torch.no_grad():
        model.decode_head.cls[1].bias[0] += 0.5  # road wins often: a non-trivial IoU for it
    ckpt = tmp / 'tiny.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'cfg': cfg.to_dict()}}, ckpt)
    return dict(root=tmp, ckpt=str(ckpt), gts=gts)


def test_train_ids_map_back_to_label_ids():
    assert TRAIN_ID_TO_LABEL_ID[:3].tolist() == [7, 8, 11]  # road, sidewalk, building
    for lbl in labels:
        if 0 <= lbl.trainId < 19:
            assert TRAIN_ID_TO_LABEL_ID[lbl.trainId] == lbl.id
    with pytest.raises(ValueError, match='train ids 0..18'):
        to_label_ids(np.array([[19]]))
    assert result_name('/x/leftImg8bit/val/aachen/aachen_000000_000001_leftImg8bit.png') == \
        'aachen_000000_000001_leftImg8bit.png'


def test_eval_miou_equals_cityscapesscripts_on_the_written_files(cityscapes, tmp_path):
    from seg.apis import evaluate

    preds = tmp_path / 'results'
    metrics = evaluate(cityscapes['ckpt'], out_dir=str(preds), out=str(tmp_path / 'm.json'), num_workers=0,
                       precision='fp32')
    files = sorted(str(p) for p in preds.iterdir())
    assert [os.path.basename(f) for f in files] == [os.path.basename(g).replace('gtFine_labelIds', 'leftImg8bit')
                                                    for g in cityscapes['gts']]
    written = cv2.imread(files[0], cv2.IMREAD_UNCHANGED)
    assert written.shape == (48, 96) and set(np.unique(written)) <= set(TRAIN_ID_TO_LABEL_ID[:19].tolist())
    official = evaluate_label_files(files, cityscapes['gts'])  # numpy 2.4 has no np.in1d: the shim is used
    assert 0 < official['mIoU'] < 1
    assert abs(metrics['mIoU'] / 100 - official['mIoU']) < 1e-4
    saved = json.loads((tmp_path / 'm.json').read_text())
    assert saved['mIoU'] == metrics['mIoU']  # a top-level mIoU key
    for name, iou in official['IoU'].items():
        ours = metrics.get(f'IoU.{name}')
        if np.isnan(iou):
            assert ours is None or np.isnan(ours)
        else:
            assert abs(ours / 100 - iou) < 1e-4, name


def test_format_only_on_the_test_split_for_the_server(cityscapes, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, 'tools/eval.py', '--ckpt', cityscapes['ckpt'], '--format-only', '--out-dir',
                           str(tmp_path / 'server'), '--split', 'test', '--num-workers', '0'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.name for p in (tmp_path / 'server').iterdir())
    assert names == ['aachen_000000_000000_leftImg8bit.png', 'aachen_000000_000001_leftImg8bit.png',
                     'bremen_000000_000000_leftImg8bit.png']
    assert 'wrote 3 results files' in proc.stdout


def test_tta_averages_the_softmax_over_scales_and_flips(cityscapes):
    from seg.apis import init_model
    from seg.models.tta import tta_probabilities

    model = init_model(cityscapes['ckpt'])
    image = np.random.default_rng(1).integers(0, 255, (48, 96, 3), dtype=np.uint8)
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)

    def probs_of(img):  # the model's probabilities of one view, at the view's size
        x = (torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() - mean) / std
        with torch.no_grad():
            return model.inference(x).softmax(1)[0]

    single = tta_probabilities(model, image, ratios=(1.0,), flip=False)
    torch.testing.assert_close(single, probs_of(image))
    flipped = tta_probabilities(model, image, ratios=(1.0,), flip=True)
    torch.testing.assert_close(flipped, (probs_of(image) + probs_of(image[:, ::-1]).flip(-1)) / 2)
    # A scale: the image resized by the ratio, the logits resized back before the softmax.
    half = cv2.resize(image, (48, 24), interpolation=cv2.INTER_LINEAR)
    x = (torch.from_numpy(half).permute(2, 0, 1)[None].float() - mean) / std
    with torch.no_grad():
        logits = torch.nn.functional.interpolate(model.inference(x), size=(48, 96), mode='bilinear')
    torch.testing.assert_close(tta_probabilities(model, image, ratios=(0.5,), flip=False), logits.softmax(1)[0])
    full = tta_probabilities(model, image)  # the default 6 ratios x 2
    torch.testing.assert_close(full.sum(0), torch.ones(48, 96))
    with pytest.raises(ValueError, match='positive'):
        tta_probabilities(model, image, ratios=(0.0,))


def tta_metrics_by_hand(model, gts, ratios, flip=True) -> np.ndarray:
    """aAcc, mIoU and the 19 IoUs (percent, rounded as evaluate rounds them) of every val image through
    tta_probabilities, counted against its train ids."""
    from seg.evaluation.metrics import confusion_matrix, metrics_from_confusion
    from seg.models.tta import tta_probabilities

    total = torch.zeros(19, 19, dtype=torch.int64)
    for gt_path in gts:
        image_path = gt_path.replace('gtFine', 'leftImg8bit', 1).replace('_gtFine_labelIds', '_leftImg8bit')
        image = cv2.cvtColor(cv2.imread(image_path), cv2.COLOR_BGR2RGB)
        pred = tta_probabilities(model, image, ratios, flip).argmax(0)
        gt_path = gt_path.replace('labelIds', 'labelTrainIds')
        gt = torch.from_numpy(cv2.imread(gt_path, cv2.IMREAD_UNCHANGED)).long()
        total += confusion_matrix(pred, gt, 19, 255)
    m = metrics_from_confusion(total)
    return np.round(100 * np.array([m['aAcc'], m['mIoU'], *m['IoU'].tolist()]), 2)


def evaluated(metrics: dict) -> np.ndarray:
    """aAcc, mIoU and the per-class IoUs of evaluate's result, in class order."""
    ious = [v for k, v in metrics.items() if k.startswith('IoU.')]
    return np.array([metrics['aAcc'], metrics['mIoU'], *ious])


def test_eval_with_tta_in_whole_and_slide_modes(cityscapes):
    from seg.apis import evaluate, init_model
    from seg.models.tta import DEFAULT_RATIOS

    ratios = (0.75, 1.0)
    whole = evaluate(cityscapes['ckpt'], tta=dict(ratios=ratios, flip=True), num_workers=0, precision='fp32',
                     fold_bn=False)
    assert 'IoU.road' in whole and len(evaluated(whole)) == 2 + 19
    # The same, by hand.
    model = init_model(cityscapes['ckpt'])
    np.testing.assert_array_equal(evaluated(whole), tta_metrics_by_hand(model, cityscapes['gts'], ratios))
    slide_cfg = dict(mode='slide', crop_size=(32, 48), stride=(16, 32))
    slide = evaluate(cityscapes['ckpt'], tta=True, mode='slide', num_workers=0, precision='fp32', fold_bn=False,
                     cfg_options={f'model.test_cfg.{k}': v for k, v in slide_cfg.items() if k != 'mode'})
    whole_default = tta_metrics_by_hand(model, cityscapes['gts'], DEFAULT_RATIOS)
    model.test_cfg.update(slide_cfg)  # every view by sliding 32x48 windows
    slide_by_hand = tta_metrics_by_hand(model, cityscapes['gts'], DEFAULT_RATIOS)
    np.testing.assert_array_equal(evaluated(slide), slide_by_hand)
    assert not np.array_equal(slide_by_hand, whole_default, equal_nan=True)  # the check tells the modes apart
