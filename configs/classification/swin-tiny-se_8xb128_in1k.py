# Table 15: Swin-T with squeeze-and-excitation (reduction 16) after every attention mixer.
_base_ = ['./swin-tiny_8xb128_in1k.py']

model = dict(backbone=dict(se_ratio=16))
