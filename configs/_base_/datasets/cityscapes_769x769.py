# The 769x769 training pipeline of Cityscapes (mmsegmentation recipe). A 769x769 config inherits its
# 512x1024 sibling and this file, and takes the pipeline with {{_base_.train_pipeline_769}}; the
# names here are new, so the two bases do not clash.
train_pipeline_769 = [
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(769, 769), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Pad', size=(769, 769), pad_val=0),
]
