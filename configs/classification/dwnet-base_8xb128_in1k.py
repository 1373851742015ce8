# DWNet (static 7x7 depth-wise conv), base, ImageNet-1k 224x224.
# 300 epochs on 8 GPUs x 128 images (paper Table 2).
_base_ = [
    './_base_/models/base_224.py',
    './_base_/datasets/imagenet_bs128_swin_224.py',
    './_base_/schedules/imagenet_bs1024_adamw_300e.py',
    './_base_/default_runtime.py',
]

model = dict(backbone=dict(type='DWNet'))
