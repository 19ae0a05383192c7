# Cityscapes fine, 19 classes, 769x769 crops (mmsegmentation recipe). Data under data/cityscapes
# (leftImg8bit/, gtFine/ with *_labelTrainIds.png: see data/README.md).
dataset_type = 'CityscapesDataset'
data_root = 'data/cityscapes'
crop_size = (769, 769)
train_pipeline = [
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Pad', size=crop_size, pad_val=0),
]
test_pipeline = [dict(type='Resize', scale=(2048, 1024), keep_ratio=True)]
# The recipe's batch over all processes (4 GPUs x 2 images); split across the processes at launch.
total_batch_size = 8
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True,
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),
    collate_fn=dict(type='seg_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='seg_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=test_pipeline,
                 test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric')
test_evaluator = val_evaluator
