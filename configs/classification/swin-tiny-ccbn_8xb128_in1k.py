# Table 12: Swin-T with centering-calibrated BatchNorm (CC-BN: BN(x + w_m * mean_hw(x)), w_m
# initialised to 0) instead of LayerNorm before the attention and the FFN.
_base_ = ['./swin-tiny_8xb128_in1k.py']

model = dict(backbone=dict(norm1_cfg=dict(type='CCBN'), norm2_cfg=dict(type='CCBN')))
