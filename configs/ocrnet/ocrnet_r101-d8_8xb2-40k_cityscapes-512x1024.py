# OCRNet R-101-D8, Cityscapes 512x1024, 8xb2-40k (mmsegmentation recipe).
_base_ = './ocrnet_r50-d8_8xb2-40k_cityscapes-512x1024.py'
model = dict(backbone=dict(depth=101, pretrained='open-mmlab://resnet101_v1c'))
