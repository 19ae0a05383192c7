# Attention head on a dilated ResNet-50 (deep stem, output stride 8): CCNet's model with the
# recurrent criss-cross module replaced by one module of the attention zoo (seg.models.attention),
# SE by default; auxiliary FCN head on stage 3. A final config picks the module with
# model.decode_head.attention=dict(type=NAME, ...). This base sets no option beside 'type', so a
# final config's dict merges cleanly; add _delete_=True to the final dict if a base ever does.
_base_ = ['./ccnet_r50-d8.py']
# mmsegmentation's recipe: torch.nn.SyncBatchNorm in backbone and heads, batch statistics over all the
# GPU processes of a DDP run (BatchNorm's numbers in one process; see seg/models/norm.py for CPU runs).
norm = 'SyncBN'
model = dict(
    decode_head=dict(_delete_=True, type='AttentionHead', in_channels=2048, channels=512, num_classes=19,
                     attention=dict(type='se'), in_index=3, dropout=0.1, norm=norm),
)
