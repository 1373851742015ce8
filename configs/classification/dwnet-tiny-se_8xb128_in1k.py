# Table 15: DWNet-T with squeeze-and-excitation (reduction 16) after every depth-wise conv mixer.
_base_ = ['./dwnet-tiny_8xb128_in1k.py']

model = dict(backbone=dict(se_ratio=16))
