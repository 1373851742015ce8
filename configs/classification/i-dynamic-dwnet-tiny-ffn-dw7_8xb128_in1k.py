# Table 6: I-D-DWNet-T plus an extra 7x7 depth-wise conv (+ BN, residual) before every FFN, as
# the "neighbor-window connection" of Shuffle Transformer (kernel = window size).
_base_ = ['./i-dynamic-dwnet-tiny_8xb128_in1k.py']

model = dict(backbone=dict(ffn_dwconv_kernel=7))
