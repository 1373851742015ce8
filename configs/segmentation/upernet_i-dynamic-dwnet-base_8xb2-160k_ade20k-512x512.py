# UPerNet + I-D-DWNet-B (inhomogeneous dynamic depth-wise conv, 32 weight groups per stage),
# ADE20K 512x512, 160k iterations.
_base_ = './upernet_dwnet-base_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='IDynamicDWNet',
        init_cfg=dict(checkpoint='checkpoints/i-dynamic-dwnet-base_in1k.pth')))
