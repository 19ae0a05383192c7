"""The R-50-D8 Cityscapes configs the side-by-side benchmarks run, by head (relative to configs/)."""
CONFIGS = {
    'fcn': 'fcn/fcn_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'ccnet': 'ccnet/ccnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'danet': 'danet/danet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'nonlocal': 'nonlocal/nonlocal_r50-d8_4xb2-40k_cityscapes-512x1024.py',
}
# mmsegmentation keeps the non-local configs in nonlocal_net/.
PEER_CONFIGS = {**CONFIGS, 'nonlocal': 'nonlocal_net/nonlocal_r50-d8_4xb2-40k_cityscapes-512x1024.py'}
