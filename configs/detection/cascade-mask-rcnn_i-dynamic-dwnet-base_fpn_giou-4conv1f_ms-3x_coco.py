_base_ = './cascade-mask-rcnn_dwnet-base_fpn_giou-4conv1f_ms-3x_coco.py'

model = dict(
    backbone=dict(
        type='IDynamicDWNet',
        init_cfg=dict(checkpoint='checkpoints/i-dynamic-dwnet-base_in1k.pth')))
