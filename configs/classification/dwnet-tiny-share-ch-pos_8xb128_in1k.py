# Table 4, DW conv "SC + SP": 7x7 kernels shared by the channels of a head and across positions.
_base_ = ['./dwnet-tiny_8xb128_in1k.py']

model = dict(backbone=dict(mixer=dict(share_channels=True, share_positions=True)))
