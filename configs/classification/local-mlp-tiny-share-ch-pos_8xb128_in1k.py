# Table 4, Local MLP "SC + SP": window weights shared by the channels of a head and by all
# windows.  (Local MLP "SC only" is the Table 2 model local-mlp-tiny_8xb128_in1k.py.)
_base_ = ['./local-mlp-tiny_8xb128_in1k.py']

model = dict(backbone=dict(mixer=dict(share_channels=True, share_positions=True)))
