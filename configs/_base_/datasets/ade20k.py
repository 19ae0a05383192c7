# ADE20K (SceneParsing, ADEChallengeData2016), 150 classes, reduce_zero_label, 512x512 crops.
dataset_type = 'ADE20KDataset'
data_root = 'data/ade/ADEChallengeData2016'
crop_size = (512, 512)
train_pipeline = [
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Pad', size=crop_size, pad_val=0),
]
test_pipeline = [dict(type='Resize', scale=(2048, 512), keep_ratio=True)]
# The recipe's batch over all processes (4 GPUs x 4 images); split across the processes at launch.
total_batch_size = 16
train_dataloader = dict(
    batch_size=4, num_workers=4, persistent_workers=True,
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),
    collate_fn=dict(type='seg_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='training', pipeline=train_pipeline,
                 reduce_zero_label=True))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='seg_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='validation', pipeline=test_pipeline,
                 reduce_zero_label=True, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric')
test_evaluator = val_evaluator
