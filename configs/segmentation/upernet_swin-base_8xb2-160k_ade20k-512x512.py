# UPerNet + Swin-B (window 7, ImageNet-1K 224 weights), ADE20K 512x512, 160k iterations.
_base_ = './upernet_swin-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint='checkpoints/swin-base_in1k.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
