# Table 12: Swin-T with BatchNorm instead of LayerNorm before the attention and the FFN.
_base_ = ['./swin-tiny_8xb128_in1k.py']

model = dict(backbone=dict(norm1_cfg=dict(type='BN'), norm2_cfg=dict(type='BN')))
