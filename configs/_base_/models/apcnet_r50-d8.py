# APCNet (adaptive context modules at pool scales 1, 2, 3, 6, with fusion)
# on a dilated ResNet-50 (deep stem, output stride 8), auxiliary FCN head on stage 3.
# mmsegmentation's recipe: torch.nn.SyncBatchNorm in backbone and heads, batch statistics over all the
# GPU processes of a DDP run (BatchNorm's numbers in one process; see seg/models/norm.py for CPU runs).
norm = 'SyncBN'
model = dict(
    type='EncoderDecoder',
    num_classes=19,
    data_preprocessor=dict(type='SegDataPreprocessor', mean=(123.675, 116.28, 103.53),
                           std=(58.395, 57.12, 57.375), pad_val=0),
    backbone=dict(type='DilatedResNet', depth=50, deep_stem=True, output_stride=8, norm=norm,
                  pretrained='open-mmlab://resnet50_v1c'),
    decode_head=dict(type='APCHead', in_channels=2048, channels=512, num_classes=19, pool_scales=(1, 2, 3, 6),
                     fusion=True, in_index=3, dropout=0.1, norm=norm),
    auxiliary_head=dict(type='FCNHead', in_channels=1024, channels=256, num_classes=19, num_convs=1,
                        concat_input=False, in_index=2, dropout=0.1, norm=norm),
    loss_weights=dict(out=1.0, aux=0.4),
    align_corners=False,
    test_cfg=dict(mode='whole'),
)
