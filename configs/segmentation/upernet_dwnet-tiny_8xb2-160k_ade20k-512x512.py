# UPerNet with a DWNet-T backbone on ADE20K, 512x512 crops, 160k iterations: the official
# DemystifyLocalViT recipe (downstreams/segmentation/configs/dwnet) in mmseg 1.x syntax.
# Model, data, runtime and schedule come from mmseg's Swin UPerNet bases; only what differs is
# overridden here.  The other seven models inherit this file and change the backbone alone.
_base_ = [
    'mmseg::_base_/models/upernet_swin.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py'
]
default_scope = 'mmseg'
custom_imports = dict(imports=['mmdwnet'], allow_failed_imports=False)

crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
# ImageNet-1K weights: an official classification checkpoint (e.g. dwnet_tiny_224.pth) converted
# with `tools/model_converters/official2mmdwnet.py dwnet_tiny_224.pth <pretrained>`.
pretrained = 'checkpoints/dwnet-tiny_in1k.pth'
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='DWNet',
        arch='tiny',
        drop_path_rate=0.3,
        # the official segmentation DWNet uses SyncBN for every BN: in the mixer (and its
        # dynamic-kernel generator), before the FFN and on each returned stage
        mixer=dict(norm_cfg=norm_cfg),
        norm2_cfg=norm_cfg,
        out_indices=(0, 1, 2, 3),
        out_norm_cfg=norm_cfg,
        pad_to_window=True,  # zero-pad each block's input to a multiple of the 7x7 window
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=384, in_index=2, num_classes=150, norm_cfg=norm_cfg))

# AdamW, no weight decay on normalisation layers (any type, backbone and heads) nor on position
# tables (Swin's relative position bias).
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
        }))

# 1500 iterations of linear warm-up from 1e-6 x lr, then poly (power 1) decay to 0 at 160k.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False)
]

# 8 GPUs x 2 images = batch 16.
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Multi-scale + flip test-time augmentation, mmseg style (used by *_ms-flip-tta.py configs or
# mmseg's `tools/test.py --tta`): the single-scale test size (2048, 512) times these ratios.
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True)
             for r in img_ratios],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ])
]
tta_model = dict(type='SegTTAModel')
