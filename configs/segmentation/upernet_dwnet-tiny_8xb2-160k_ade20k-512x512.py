# UPerNet with a DWNet-T backbone on ADE20K, 512x512 crops, 160k iterations: the official
# DemystifyLocalViT recipe (downstreams/segmentation/configs/dwnet) in mmseg 1.x syntax.
# Model (UPerNet channels 512, pool scales 1,2,3,6 + FCN auxiliary head on stage 3 with loss
# weight 0.4), ADE20K data pipeline, runtime, AdamW and the 1500-iteration warm-up + poly schedule
# all come from mmseg's Swin-T UPerNet config, which follows the same recipe; only what differs is
# overridden here.  The other seven models inherit this file and change the backbone alone.
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'
default_scope = 'mmseg'
custom_imports = dict(imports=['mmdwnet'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
# ImageNet-1K weights: the official classification checkpoint (dwnet_tiny_224.pth) loads as released
# (converted on load), as does an mmdwnet checkpoint.
checkpoint_file = 'checkpoints/dwnet-tiny_in1k.pth'
# The heads (UPerHead in_channels [96, 192, 384, 768], FCNHead in_index=2, 150 classes, SyncBN)
# and the 512x512 data preprocessor are the base's.
model = dict(
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
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file, prefix='backbone.')))

# AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01, none on normalisation layers (every type,
# backbone and heads, by layer type rather than by the name 'norm') nor on position tables.
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

# The schedule (LinearLR warm-up over 1500 iterations from 1e-6 x lr, then PolyLR power 1.0 to 0
# at 160k) and the batch (8 GPUs x 2 images = 16) are the base's.
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Multi-scale + flip test-time augmentation, mmseg style (used by *_ms-flip-tta.py configs or
# mmseg's `tools/test.py --tta`, with the base's tta_model): the single-scale test size
# (2048, 512) times these ratios, as the mmseg 0.x multi-scale test of the official code.
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
