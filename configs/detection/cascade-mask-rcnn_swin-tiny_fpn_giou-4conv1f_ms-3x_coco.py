_base_ = './cascade-mask-rcnn_dwnet-tiny_fpn_giou-4conv1f_ms-3x_coco.py'

# Swin keeps LayerNorm before the mixer and the FFN and on the returned stages (official Swin
# detection code); its attention mixer has no norm of its own.
model = dict(
    backbone=dict(
        type='SwinNet',
        mixer=dict(_delete_=True),
        norm2_cfg=dict(_delete_=True, type='LN'),
        out_norm_cfg=dict(_delete_=True, type='LN'),
        init_cfg=dict(checkpoint='checkpoints/swin-tiny_in1k.pth')))
