# Cascade Mask R-CNN + nano DWNet on the digit scenes (`python demo/digit_scenes.py` ->
# data/digit_scenes/coco), fine-tuned from the classification demo's checkpoint
# (configs/classification/digits/dwnet-nano_1xb64-30e_digits-on-photos-32px.py: the digits
# classifier trained on digits repainted on photos, by `make demo`).
# Inherits the paper's COCO config and changes what differs: arch (and the heads' widths that
# follow from it), data and schedule. One process, 4 scenes per batch, 960 iterations (2 epochs of 1920 scenes).
# Another data set in the same layout: `--cfg-options data_root=DIR/` (tools/train.py and
# tools/test.py move every dataset that used this config's data_root; mmdwnet.utils.cli).
# (the evaluator reads the ground truth from the val dataset, so no annotation path to change).
_base_ = ['../cascade-mask-rcnn_dwnet-tiny_fpn_giou-4conv1f_ms-3x_coco.py']

# The classification checkpoint: the real pretrain -> fine-tune chain, loaded by the backbone's
# init_cfg exactly as the paper's configs load an ImageNet checkpoint (prefix 'backbone.').
# A missing file stops the run with FileNotFoundError: never a silently random backbone.
pretrained = 'work_dirs/demo/dwnet-nano_1xb64-30e_digits-on-photos-32px/epoch_30.pth'
width = 64  # FPN, RPN and RoI-head channels (256 in the paper's config)
num_classes = 10

# ---- model: the classification demo's nano arch (embed 32, depths 1-1-2-1); `arch` is the
# string 'tiny' in the base, so `_delete_=True` replaces it.
# Lists do not merge with the base's: the three cascade heads (the base's ConvFCBBoxHead, 4 convs
# + 1 FC, GIoU loss, its per-stage target stds) and the per-stage sampling are written out whole.
norm_cfg = dict(type='SyncBN', requires_grad=True)  # BN when not distributed
stage_stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
stage_ious = [0.5, 0.6, 0.7]
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8]),
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=[
            dict(type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1, in_channels=width,
                 conv_out_channels=width, fc_out_channels=2 * width, roi_feat_size=7,
                 num_classes=num_classes,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                 target_stds=stds),
                 reg_class_agnostic=False, reg_decoded_bbox=True, norm_cfg=norm_cfg,
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='GIoULoss', loss_weight=10.0)) for stds in stage_stds
        ],
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width, num_classes=num_classes)),
    # 64 sampled RoIs per image (512 in the base): a scene holds 2-5 digits, and the 4-conv box
    # and mask heads on the sampled RoIs are most of a training step (128 RoIs: 1.6 s a step on one
    # thread, 64: 0.9 s; measured bbox / segm mAP with 64 and 8 epochs: 0.575 / 0.521)
    train_cfg=dict(rcnn=[
        dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou,
                           min_pos_iou=iou, match_low_quality=False, ignore_iof_thr=-1),
             sampler=dict(type='RandomSampler', num=64, pos_fraction=0.25, neg_pos_ub=-1,
                          add_gt_as_proposals=True),
             mask_size=28, pos_weight=-1, debug=False) for iou in stage_ious
    ]),
    # 300 RPN proposals at test time (1000 in the base): a scene holds at most 5 digits; the three
    # cascade stages' heads run on every proposal (0.65 -> 0.36 s a scene measured, bbox / segm
    # mAP 0.575 / 0.521 -> 0.575 / 0.519; 100 proposals: 0.562 / 0.510)
    test_cfg=dict(rpn=dict(max_per_img=300)))

# ---- data: COCO instances (RLE masks), scenes of 96-192 px kept at their size; no flip
# (digits are not mirror-symmetric).
data_root = 'data/digit_scenes/coco/'
metainfo = dict(classes=tuple(str(d) for d in range(10)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    # 'instances': the raw annotations, from which CocoMetric builds its ground truth
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                    'instances')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,  # small JPEGs; workers only add start-up time on a 2-core CPU
    persistent_workers=False,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
# ann_file=None: CocoMetric builds the COCO ground truth from the val dataset it is given (the
# 'instances' packed above), so overriding the loaders' data_root is all another data set needs.
# (Its ground-truth areas are box areas: only the small/medium/large split uses them.)
val_evaluator = dict(ann_file=None)
test_evaluator = val_evaluator

# ---- schedule: AdamW (the base's, with its no-decay rules) at 4e-4 for a batch of 4, 960
# iterations (2 epochs of the 1920 training scenes; counted in iterations so that another data
# set keeps the schedule), 100-iteration warm-up, lr x0.1 for the last 120; validation and
# checkpoint at the end.
max_iters = 960
train_dataloader.update(sampler=dict(type='InfiniteSampler', shuffle=True))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=4e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[840],
         gamma=0.1)
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
