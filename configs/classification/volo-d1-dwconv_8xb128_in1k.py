# Table 13: VOLO-D1 with the 7x7 depth-wise conv block (mmdwnet's DWConv) instead of the
# Outlooker.
_base_ = ['./volo-d1_8xb128_in1k.py']

model = dict(backbone=dict(mixer=dict(_delete_=True, type='DWConv', kernel_size=7)))
