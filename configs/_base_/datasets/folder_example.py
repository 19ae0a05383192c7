# A folder dataset in a small public-style layout (CamVid-like): images plus index masks, a void
# label that is not 255. docs/compare.md writes one from the synthetic scenes and compares heads on it:
#   data/streets_folder/{train,val}/images/*.png   RGB images
#   data/streets_folder/{train,val}/labels/*.png   one class index per pixel, 11 = void
# ignore_index is set here, on the dataset only: the loss, the metric and the label padding take it.
classes = ('road', 'bus_lane', 'sidewalk', 'building', 'vegetation', 'sky', 'car', 'traffic_sign', 'bus_stop')
folder = dict(type='FolderDataset', data_root='data/streets_folder', classes=classes, img_suffix='.png',
              seg_map_suffix='.png', ignore_index=11)
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    sampler=dict(type='SeededInfiniteSampler', shuffle=True), collate_fn=dict(type='seg_collate'),
    dataset=dict(img_dir='train/images', ann_dir='train/labels', pipeline=[dict(type='RandomFlip', prob=0.5)],
                 **folder))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False), collate_fn=dict(type='seg_collate'),
    dataset=dict(img_dir='val/images', ann_dir='val/labels', test_mode=True, **folder))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric')
test_evaluator = val_evaluator
