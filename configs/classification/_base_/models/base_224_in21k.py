# Base classifier for ImageNet-21k pre-training (Swin's 22K recipe): the Table 2 base classifier
# with drop path 0.2 and a 21,842-class head (mmpretrain's ImageNet21k).
_base_ = './base_224.py'

model = dict(backbone=dict(drop_path_rate=0.2), head=dict(num_classes=21842))
