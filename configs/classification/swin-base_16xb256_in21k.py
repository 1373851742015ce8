# Swin Transformer (shifted-window attention), base,
# pre-trained on ImageNet-21k at 224x224 with Swin's 22K recipe (paper Appendix F, Tables 10
# and 11): 90 epochs on 16 GPUs x 256 images.
_base_ = [
    './_base_/models/base_224_in21k.py',
    './_base_/datasets/imagenet21k_bs256_swin_224.py',
    './_base_/schedules/imagenet_bs4096_adamw_90e.py',
    './_base_/default_runtime.py',
]

model = dict(backbone=dict(type='SwinNet'))
