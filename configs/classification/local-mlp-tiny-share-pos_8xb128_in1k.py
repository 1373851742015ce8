# Table 4, Local MLP "SP only": one static window weight per channel (no sharing across the
# channels of a head), shared by all windows (positions).
_base_ = ['./local-mlp-tiny_8xb128_in1k.py']

model = dict(backbone=dict(mixer=dict(share_channels=False, share_positions=True)))
