# UPerNet + nano DWNet on the digit scenes (`python demo/digit_scenes.py` ->
# data/digit_scenes/ade, ADE20K layout), fine-tuned from the classification demo's checkpoint
# (configs/classification/digits/dwnet-nano_1xb64-30e_digits-on-photos-32px.py: the digits
# classifier trained on digits repainted on photos, by `make demo`).
# Inherits the paper's ADE20K config and changes what differs: arch (and the heads' widths that
# follow from it), data, loss weights and schedule. One process, 8 crops of 96x96 per batch.
# Another data set in the same layout: `--cfg-options data_root=DIR/` (tools/train.py and
# tools/test.py move every dataset that used this config's data_root; mmdwnet.utils.cli).
_base_ = ['../upernet_dwnet-tiny_8xb2-160k_ade20k-512x512.py']

# The classification checkpoint, loaded by the backbone's init_cfg as the paper's configs load an
# ImageNet one; a missing file stops the run with FileNotFoundError.
pretrained = 'work_dirs/demo/dwnet-nano_1xb64-30e_digits-on-photos-32px/epoch_30.pth'
classes = ('background', ) + tuple(str(d) for d in range(10))
# Background is about 94% of the pixels: with plain cross-entropy UPerNet settles in the
# all-background minimum (measured: mIoU 8.6), so background weighs 0.02 in the cross-entropy.
# At 0.1 (and lr 1e-3) the head finds the digits early but does not name them for 2000-2500
# iterations (still mIoU 8.66 at 2000 iterations; 48.36 at 6000); 0.02 with lr 2e-3 leaves
# that plateau sooner (25.04 at 2000, 54.54 at 6000; docs/downstream.md).
# The decode head undoes the weights at inference (ClassWeightAdjustedUPerHead: logits - log w;
# without it the predicted digits come out 1.3x too large, docs/downstream.md).
class_weight = [0.02] + [1.0] * 10
custom_imports = dict(imports=['mmdwnet', 'mmdwnet.models.heads'], allow_failed_imports=False)
crop_size = (96, 96)  # <= the smallest scene: no padded (255) labels in a training crop

# ---- model: the classification demo's nano arch (embed 32, depths 1-1-2-1).
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8]),
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(
        type='ClassWeightAdjustedUPerHead',
        in_channels=[32, 64, 128, 256], channels=64, num_classes=len(classes),
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                         class_weight=class_weight)),
    auxiliary_head=dict(
        in_channels=128, channels=32, num_classes=len(classes),
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4,
                         class_weight=class_weight)))

# ---- data: the ADE20K layout with 11 classes, pixel value = class index
# (reduce_zero_label=False: 0 is the background class, not "ignore"); no flip (digits are not
# mirror-symmetric); test at the scene's own size.
data_root = 'data/digit_scenes/ade'
metainfo = dict(
    classes=classes,
    palette=[[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
             [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60],
             [250, 190, 212]])
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False)
train_dataloader = dict(
    batch_size=8,
    num_workers=0,  # small JPEGs; workers only add start-up time on a 2-core CPU
    persistent_workers=False,
    dataset=dict(
        _delete_=True, **dataset, pipeline=train_pipeline,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True, **dataset, pipeline=test_pipeline,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation')))
test_dataloader = val_dataloader

# ---- schedule: AdamW (the base's, with its no-decay rules) at 2e-3, 200-iteration warm-up then
# poly decay to 0 at 6000 iterations; validation and checkpoint at the end.
max_iters = 6000
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=200),
    dict(type='PolyLR', power=1.0, eta_min=0., by_epoch=False, begin=200, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=100),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
