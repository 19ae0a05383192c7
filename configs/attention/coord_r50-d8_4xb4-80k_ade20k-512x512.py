# Coordinate attention (Hou et al., CVPR 2021): H and W direction-aware gates.
# Attention head R-50-D8, ADE20K 512x512, 80k iterations (CCNet's recipe); see docs/attention.md.
_base_ = [
    '../_base_/models/attn_r50-d8.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k.py',
]
model = dict(num_classes=150, decode_head=dict(num_classes=150, attention=dict(type='coord')),
             auxiliary_head=dict(num_classes=150))
