_base_ = './cascade-mask-rcnn_dwnet-base_fpn_giou-4conv1f_ms-3x_coco.py'

# Swin keeps LayerNorm on the returned stages (official Swin detection code).
model = dict(
    backbone=dict(
        type='SwinNet',
        out_norm_cfg=dict(_delete_=True, type='LN'),
        init_cfg=dict(checkpoint='checkpoints/swin-base_in1k.pth')))
