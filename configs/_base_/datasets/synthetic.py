# The embedded synthetic street scenes (generated on first use, cached under data/synthetic).
dataset_type = 'SyntheticStreets'
data_root = 'data/synthetic'
img_size = (96, 192)
# Flip only: a crop could cut the bus-stop panel off and leave a 'bus_lane' label without its cue.
train_pipeline = [dict(type='RandomFlip', prob=0.5)]
test_pipeline = []
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),
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
