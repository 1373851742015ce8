# Table 12: DWNet-T with LayerNorm instead of BatchNorm before the FFN (the depth-wise conv
# block keeps its BNs; DWNet has no norm before the mixer).
_base_ = ['./dwnet-tiny_8xb128_in1k.py']

model = dict(backbone=dict(norm2_cfg=dict(type='LN')))
