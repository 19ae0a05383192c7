# DNLNet (disentangled non-local) R-50-D8, ADE20K 512x512, 160k iterations (mmsegmentation recipe).
_base_ = [
    '../_base_/models/dnl_r50-d8.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_160k.py',
]
model = dict(num_classes=150, decode_head=dict(num_classes=150), auxiliary_head=dict(num_classes=150))
