# Table 4, DW conv "SC only": 7x7 kernels shared by the channels of a head (num_heads groups)
# but not across positions -- a locally connected layer (one kernel per position, 224 input).
# (DW conv "SP only" is the Table 2 model dwnet-tiny_8xb128_in1k.py.)
_base_ = ['./dwnet-tiny_8xb128_in1k.py']

model = dict(backbone=dict(mixer=dict(share_channels=True, share_positions=False)))
