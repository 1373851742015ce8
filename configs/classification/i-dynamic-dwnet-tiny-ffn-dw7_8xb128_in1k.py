# Table 6: I-D-DWNet-T plus an extra 7x7 depth-wise conv with a residual before every FFN, in
# Shuffle Transformer's form x + DW(BN(x)) (its "neighbor-window connection", kernel = window
# size).  model.backbone.ffn_dwconv_norm_first=False gives the variant x + BN(DW(x)).
_base_ = ['./i-dynamic-dwnet-tiny_8xb128_in1k.py']

model = dict(backbone=dict(ffn_dwconv_kernel=7))
