# SimAM (Yang et al., ICML 2021): parameter-free energy-based 3-D gate.
# Attention head R-50-D8, Cityscapes 512x1024, 80k iterations (CCNet's recipe); see docs/attention.md.
_base_ = [
    '../_base_/models/attn_r50-d8.py', '../_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k.py',
]
model = dict(decode_head=dict(attention=dict(type='simam')))
