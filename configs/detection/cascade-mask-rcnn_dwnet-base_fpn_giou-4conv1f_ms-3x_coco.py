_base_ = './cascade-mask-rcnn_dwnet-tiny_fpn_giou-4conv1f_ms-3x_coco.py'

# Drop path 0.3 as the official DemystifyLocalViT and Swin base detection configs.
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/dwnet-base_in1k.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
