# ImageNet-1k for VOLO: the Swin / DeiT training pipeline (RandAugment rand-m9-mstd0.5-inc1,
# random erasing 0.25, bicubic) and VOLO's test crop ratio 0.96: short edge 233, center 224.
# (VOLO trains with timm's random bilinear/bicubic interpolation; bicubic here.)
_base_ = ['./imagenet_bs128_swin_224.py']

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=233, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
