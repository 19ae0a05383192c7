# DNLNet (disentangled non-local) R-101-D8, ADE20K 512x512, 80k iterations (mmsegmentation recipe).
_base_ = './dnl_r50-d8_4xb4-80k_ade20k-512x512.py'
model = dict(backbone=dict(depth=101, pretrained='open-mmlab://resnet101_v1c'))
