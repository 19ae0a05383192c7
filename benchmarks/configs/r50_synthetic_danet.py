# R-50-D8 DANet on the synthetic scenes: the accuracy guard's second trained R-50 (see r50_synthetic_ccnet.py).
_base_ = ['r50_synthetic_ccnet.py']
model = dict(decode_head=dict(_delete_=True, type='DAHead', in_channels=2048, channels=512, num_classes=9, in_index=3,
                              dropout=0.1, norm='BN'),
             loss_weights=dict(out=1.0, pam=1.0, cam=1.0, aux=0.4))
work_dir = 'work_dirs/r50_synthetic_danet'
