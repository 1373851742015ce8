# Table 11: Cascade Mask R-CNN 3x with an ImageNet-21k pre-trained Swin-B backbone.  Model and
# recipe are those of the ImageNet-1K version, as in Swin's 22K detection results; only the backbone
# checkpoint differs: the one of configs/classification/swin-base_16xb256_in21k.py (or an official
# 22K file, converted on load).
_base_ = './cascade-mask-rcnn_swin-base_fpn_giou-4conv1f_ms-3x_coco.py'

model = dict(backbone=dict(init_cfg=dict(checkpoint='checkpoints/swin-base_in21k.pth')))
