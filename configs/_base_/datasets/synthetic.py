# The embedded synthetic street scenes (generated on first use, cached under data/synthetic).
dataset_type = 'SyntheticStreets'
data_root = 'data/synthetic'
img_size = (96, 192)
crop_size = (96, 192)
train_pipeline = [
    dict(type='RandomResize', scale=(192, 96), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=crop_size, pad_val=0, seg_pad_val=255),
]
test_pipeline = []
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='seg_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', num_images=600,
                 img_size=img_size, seed=0, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='seg_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='val', num_images=100,
                 img_size=img_size, seed=1, pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric')
test_evaluator = val_evaluator
