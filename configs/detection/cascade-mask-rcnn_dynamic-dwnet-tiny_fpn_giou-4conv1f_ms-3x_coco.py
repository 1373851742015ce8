_base_ = './cascade-mask-rcnn_dwnet-tiny_fpn_giou-4conv1f_ms-3x_coco.py'

model = dict(
    backbone=dict(
        type='DynamicDWNet',
        init_cfg=dict(checkpoint='checkpoints/dynamic-dwnet-tiny_in1k.pth')))
