# Squeeze-and-excitation (Hu et al., CVPR 2018): pooled channel gate, reduction 16.
# Attention head R-50-D8, Cityscapes 512x1024, 80k iterations (CCNet's recipe); see docs/attention.md.
_base_ = [
    '../_base_/models/attn_r50-d8.py', '../_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k.py',
]
model = dict(decode_head=dict(attention=dict(type='se')))
