# Table 11: UPerNet with an ImageNet-21k pre-trained Swin-B backbone, ADE20K 512x512, 160k
# iterations.  Model and recipe are those of the ImageNet-1K version, as mmseg's
# swin-base-patch4-window7-in22k-pre_upernet config; only the backbone checkpoint differs: the
# one of configs/classification/swin-base_16xb256_in21k.py (or an official 22K file).
_base_ = './upernet_swin-base_8xb2-160k_ade20k-512x512.py'
model = dict(backbone=dict(init_cfg=dict(checkpoint='checkpoints/swin-base_in21k.pth')))
