# COCO instance segmentation with the DETR / Sparse R-CNN multi-scale
# augmentation of the official 3x configs: either a random shorter side in
# 480..800 (step 32, longer side <= 1333), or a random 400/500/600 resize, an
# absolute-range crop of 384..600 and then a random 480..800 resize; flip.
# Testing: 1333x800 keeping the aspect ratio (mmdet's coco_instance.py).
_base_ = 'mmdet::_base_/datasets/coco_instance.py'

train_scales = [(1333, 480), (1333, 512), (1333, 544), (1333, 576),
                (1333, 608), (1333, 640), (1333, 672), (1333, 704),
                (1333, 736), (1333, 768), (1333, 800)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=train_scales,
                  keep_ratio=True)],
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[(1333, 400), (1333, 500), (1333, 600)],
                    keep_ratio=True),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True),
                dict(
                    type='RandomChoiceResize',
                    scales=train_scales,
                    keep_ratio=True)
            ]
        ]),
    dict(type='PackDetInputs')
]
# drop_last: a leftover batch of one image would break training BatchNorms (D-DW kernel
# generator); mmdet's AspectRatioBatchSampler otherwise yields the leftovers at the epoch's end
train_dataloader = dict(
    batch_size=2, num_workers=2, dataset=dict(pipeline=train_pipeline),
    batch_sampler=dict(type='AspectRatioBatchSampler', drop_last=True))
