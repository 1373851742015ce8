# Cascade Mask R-CNN with FPN, the DemystifyLocalViT / Swin detection model:
# three cascade stages of ConvFCBBoxHead (4 shared convs + 1 FC, SyncBN),
# GIoU loss on decoded boxes, class-specific regression.
# The backbone is a DWNet-T; the leaf configs swap type / arch.
_base_ = 'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py'

custom_imports = dict(imports=['mmdwnet'], allow_failed_imports=False)

# An ImageNet checkpoint: mmdwnet's (tools/train.py on configs/classification) or an official
# one as released (converted on load).
pretrained = 'checkpoints/dwnet-tiny_in1k.pth'

norm_cfg = dict(type='SyncBN', requires_grad=True)  # BN when not distributed


def _bbox_head(target_stds):  # noqa: E302 (functions are dropped from configs)
    return dict(
        type='ConvFCBBoxHead',
        num_shared_convs=4,
        num_shared_fcs=1,
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=80,
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0., 0., 0., 0.],
            target_stds=target_stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=norm_cfg,
        loss_cls=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


model = dict(
    backbone=dict(
        _delete_=True,
        type='DWNet',
        arch='tiny',
        drop_path_rate=0.2,
        # the official detection DWNet builds every BN from one SyncBN config: in the mixer
        # (and its dynamic-kernel generator), before the FFN and on each returned stage
        mixer=dict(norm_cfg=norm_cfg),
        norm2_cfg=norm_cfg,
        out_indices=(0, 1, 2, 3),
        out_norm_cfg=norm_cfg,
        pad_to_window=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768]),
    roi_head=dict(bbox_head=[
        _bbox_head([0.1, 0.1, 0.2, 0.2]),
        _bbox_head([0.05, 0.05, 0.1, 0.1]),
        _bbox_head([0.033, 0.033, 0.067, 0.067]),
    ]))
