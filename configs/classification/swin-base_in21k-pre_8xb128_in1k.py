# Swin Transformer (shifted-window attention), base:
# the ImageNet-21k model (swin-base_16xb256_in21k.py) fine-tuned on ImageNet-1k
# at 224x224 with Swin's 22K -> 1K recipe (paper Table 10): 30 epochs, 5 warm-up, lr 2e-5 per
# 512 images, weight decay 1e-8, drop path 0.2, on 8 GPUs x 128 images.
_base_ = [
    './_base_/models/base_224.py',
    './_base_/datasets/imagenet_bs128_swin_224.py',
    './_base_/schedules/imagenet_bs1024_adamw_30e_ft.py',
    './_base_/default_runtime.py',
]

model = dict(backbone=dict(type='SwinNet', drop_path_rate=0.2))

# The ImageNet-21k checkpoint (the final one of the 21k config, or an official 22K file,
# converted on load): its 21,842- (or official 21,841-) class head is mapped onto the 1,000
# ImageNet-1k classes with map22kto1k.txt while loading, as the official Swin code does
# (mmdwnet.converters.imagenet22k; the log says so).
load_from = 'checkpoints/swin-base_in21k.pth'
