"""The R-50-D8 Cityscapes configs the side-by-side benchmarks run, by head (relative to configs/)."""
CONFIGS = {
    'fcn': 'fcn/fcn_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'ccnet': 'ccnet/ccnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'danet': 'danet/danet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'nonlocal': 'nonlocal/nonlocal_r50-d8_4xb2-40k_cityscapes-512x1024.py',
}
# mmsegmentation keeps the non-local configs in nonlocal_net/.
PEER_CONFIGS = {**CONFIGS, 'nonlocal': 'nonlocal_net/nonlocal_r50-d8_4xb2-40k_cityscapes-512x1024.py'}

# mmsegmentation's other context heads (benchmarks/heads_vs_mmseg.py); EMANet has no 40k config.
HEAD_CONFIGS = {
    'psp': 'pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'aspp': 'deeplabv3/deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'ocr': 'ocrnet/ocrnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'ema': 'emanet/emanet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
    'gc': 'gcnet/gcnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'isa': 'isanet/isanet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'dnl': 'dnlnet/dnl_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'ann': 'ann/ann_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'psa': 'psanet/psanet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'apc': 'apcnet/apcnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'dm': 'dmnet/dmnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
}
# mmsegmentation publishes OCRNet on R-101 only: its side builds that config at depth 50 (--depth 50).
PEER_HEAD_CONFIGS = {**HEAD_CONFIGS, 'ocr': 'ocrnet/ocrnet_r101-d8_4xb2-40k_cityscapes-512x1024.py'}
