# Twins-SVT-S classifier (Table 13): mmpretrain's own SVT model config with the small arch and
# Twins' drop-path 0.2 for SVT-S (the official alt_gvt_small recipe); final LN, global average
# pooling, linear head, label smoothing 0.1, Mixup 0.8 / CutMix 1.0.
_base_ = 'mmpretrain::_base_/models/twins_svt_base.py'

model = dict(backbone=dict(arch='small', drop_path_rate=0.2), head=dict(in_channels=512))
