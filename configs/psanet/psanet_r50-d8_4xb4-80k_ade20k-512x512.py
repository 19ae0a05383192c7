# PSANet (bi-direction) R-50-D8, ADE20K 512x512, 80k iterations (mmsegmentation recipe: 66x66 masks).
_base_ = [
    '../_base_/models/psanet_r50-d8.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k.py',
]
model = dict(num_classes=150, decode_head=dict(num_classes=150, mask_size=(66, 66)),
             auxiliary_head=dict(num_classes=150))
