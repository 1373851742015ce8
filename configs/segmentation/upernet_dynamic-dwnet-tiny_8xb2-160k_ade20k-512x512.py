# UPerNet + D-DWNet-T (homogeneous dynamic depth-wise conv), ADE20K 512x512, 160k iterations.
_base_ = './upernet_dwnet-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='DynamicDWNet',
        init_cfg=dict(checkpoint='checkpoints/dynamic-dwnet-tiny_in1k.pth')))
