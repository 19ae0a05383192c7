"""One ignore_index: the dataset's value reaches the loss, the metric and the label padding."""
import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from seg.engine.config import load_config, resolve_ignore_index

from .conftest import ROOT

VOID = 11  # CamVid's void label
CLASSES = [f'c{i}' for i in range(11)]

CONFIG = """
_base_ = ['{root}/configs/demo_ccnet.py']
num_classes = 11
folder = dict(type='FolderDataset', data_root='{data}', img_dir='images', ann_dir='labels', classes={classes},
              img_suffix='.png', seg_map_suffix='.png', ignore_index={void})
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(_delete_=True, pipeline=[dict(type='RandomCrop', crop_size=(24, 40)),
                                                              dict(type='Pad', size=(32, 48))], **folder))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(_delete_=True, test_mode=True, **folder))
test_dataloader = val_dataloader
model = dict(num_classes=num_classes, backbone=dict(channels=(8, 8, 16, 16)),
             decode_head=dict(in_channels=16, channels=8, num_classes=num_classes),
             auxiliary_head=dict(in_channels=16, channels=8, num_classes=num_classes))
max_iters = 3
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='SegTrainLoop', max_iters=max_iters, val_interval=3)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=3, max_keep_ckpts=1))
"""


def write_folder(root, n=4, h=32, w=48):
    rng = np.random.default_rng(0)
    (root / 'images').mkdir(parents=True)
    (root / 'labels').mkdir()
    for i in range(n):
        cv2.imwrite(str(root / 'images' / f'{i}.png'), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        labels = rng.integers(0, 11, (h, w), dtype=np.uint8)
        labels[: h // 2] = VOID  # the top half is void
        cv2.imwrite(str(root / 'labels' / f'{i}.png'), labels)


def write_config(tmp_path):
    write_folder(tmp_path / 'data')
    path = tmp_path / 'camvid_like.py'
    path.write_text(CONFIG.format(root=ROOT, data=tmp_path / 'data', classes=CLASSES, void=VOID))
    return str(path)


def test_dataset_ignore_index_flows_everywhere(tmp_path):
    from seg.apis.model_io import build_model

    cfg = load_config(write_config(tmp_path))
    assert cfg.model.ignore_index == VOID
    # The label padding and the losses take it from the segmentor, the one place that sets them.
    assert 'seg_pad_val' not in cfg.model.data_preprocessor
    model = build_model(cfg)
    assert model.data_preprocessor.seg_pad_val == VOID
    assert all(loss.ignore_index == VOID for loss in model.default_loss)
    assert cfg.val_evaluator.ignore_index == VOID
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert pipeline[0].ignore_index == VOID and pipeline[1].seg_pad_val == VOID


def test_folder_dataset_with_void_11_trains_and_evaluates(tmp_path):
    from seg.apis import evaluate, train

    runner = train(write_config(tmp_path), work_dir=str(tmp_path / 'work'))
    model = runner.model
    assert [fn.ignore_index for fn in model.default_loss] == [VOID]
    # The loss ignores the void pixels: all-void labels give 0, one labelled pixel gives its CE.
    logits = torch.randn(1, 11, 4, 4)
    target = torch.full((1, 4, 4), VOID)
    assert float(model.default_loss[0](logits, target)) == 0.0
    target[0, 1, 2] = 3
    expected = -torch.log_softmax(logits[0, :, 1, 2], 0)[3]
    assert torch.allclose(model.default_loss[0](logits, target), expected)
    # The metric counts only the labelled pixels (the bottom half of each mask).
    ckpt = str(tmp_path / 'work' / 'iter_3.pth')
    metrics = evaluate(ckpt, out=str(tmp_path / 'm.json'), num_workers=0, precision='fp32', fold_bn=False)
    import json

    confusion = np.array(json.loads((tmp_path / 'm.json').read_text())['confusion_matrix'])
    assert confusion.shape == (11, 11) and confusion.sum() == 4 * 16 * 48
    # The same counts by hand: the checkpoint's model on every val image, void pixels left out.
    from seg.apis import init_model
    from seg.datasets.collate import seg_collate
    from seg.evaluation.metrics import confusion_matrix, metrics_from_confusion
    from seg.registry import DATASETS

    trained = init_model(ckpt)
    dataset = DATASETS.build(trained.cfg.val_dataloader.dataset)
    by_hand = torch.zeros(11, 11, dtype=torch.int64)
    for i in range(len(dataset)):
        data = trained.data_preprocessor(seg_collate([dataset[i]]), False)
        with torch.no_grad():
            result = trained.predict(data['inputs'], data['data_samples'])[0]
        gt = result['gt_sem_seg'].long()
        assert int((gt == VOID).sum()) == 16 * 48  # the top half
        by_hand += confusion_matrix(result['pred_sem_seg'], gt, 11, VOID)
    np.testing.assert_array_equal(confusion, by_hand.numpy())
    assert metrics['mIoU'] == round(100 * metrics_from_confusion(by_hand)['mIoU'], 2)


def test_two_explicit_settings_that_disagree_name_both(tmp_path):
    config = write_config(tmp_path)
    with pytest.raises(ValueError, match=r'train_dataloader\.dataset\.ignore_index=11 but '
                                         r'model\.loss\.ignore_index=255'):
        load_config(config, {'model.loss': dict(type='CrossEntropyLoss', ignore_index=255)})
    with pytest.raises(ValueError, match=r'val_evaluator\.ignore_index=0'):
        load_config(config, {'val_evaluator.ignore_index': 0})
    # The same value set twice is fine.
    assert load_config(config, {'val_evaluator.ignore_index': VOID}).val_evaluator.ignore_index == VOID


def test_default_is_the_dataset_class_default():
    cfg = Config(dict(train_dataloader=dict(dataset=dict(type='CityscapesDataset', data_root='x')),
                      model=dict(type='EncoderDecoder', backbone={}, decode_head={}, num_classes=19)))
    assert resolve_ignore_index(cfg) == 255 and cfg.model.ignore_index == 255
    cfg = Config(dict(model=dict(type='EncoderDecoder', ignore_index=7, backbone={}, decode_head={}, num_classes=3,
                                 losses=dict(out=[dict(type='DiceLoss'), dict(type='CrossEntropyLoss')]))))
    assert resolve_ignore_index(cfg) == 7
    assert ['ignore_index' in c for c in cfg.model.losses.out] == [False, False]  # the segmentor hands it over
