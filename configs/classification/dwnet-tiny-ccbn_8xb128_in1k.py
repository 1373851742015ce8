# Table 12: DWNet-T with centering-calibrated BatchNorm (CC-BN: BN(x + w_m * mean_hw(x)), w_m
# initialised to 0) instead of BN before the FFN; the depth-wise conv block keeps its BNs, as
# in dwnet-tiny-ln_8xb128_in1k.py (DWNet has no norm before the mixer).
_base_ = ['./dwnet-tiny_8xb128_in1k.py']

model = dict(backbone=dict(norm2_cfg=dict(type='CCBN')))
