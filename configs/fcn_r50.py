# Short alias: FCN R-50-D8, Cityscapes 512x1024, 80k iterations (mmsegmentation recipe).
_base_ = './fcn/fcn_r50-d8_4xb2-80k_cityscapes-512x1024.py'
