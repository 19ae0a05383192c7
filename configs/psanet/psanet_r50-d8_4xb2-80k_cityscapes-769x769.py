# PSANet (bi-direction) R-50-D8, Cityscapes 769x769, 80k iterations (mmsegmentation recipe).
# The 512x1024 recipe with 769x769 crops, align_corners=True (model and head) and slide inference
# (crop 769, stride 513).
_base_ = ['./psanet_r50-d8_4xb2-80k_cityscapes-512x1024.py', '../_base_/datasets/cityscapes_769x769.py']
crop_size = (769, 769)
train_pipeline = {{_base_.train_pipeline_769}}
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
model = dict(align_corners=True, decode_head=dict(align_corners=True),
             test_cfg=dict(mode='slide', crop_size=crop_size, stride=(513, 513)))
