# "Train on your own data" (docs/custom_dataset.md): DWNet on scikit-learn's handwritten digits
# written as an image folder (`python demo/digits.py` -> data/digits/{train,val}/<digit>/*.png).
# Inherits the ImageNet config and changes the three things that differ: arch, data, schedule.
# One process, 64 images per batch, 10 epochs of 22 iterations (the base's drop_last drops the
# last 29 images of each shuffled epoch); `make demo` trains it.
_base_ = ['../dwnet-tiny_8xb128_in1k.py']

# ---- model: a 4-stage nano arch for 32x32 inputs (8x8 tokens after the 4x4 patch embedding).
# `arch` is the string 'tiny' in the base: a dict cannot be merged into a string, so
# `_delete_=True` replaces it. Mixup/CutMix are off (train_cfg=None).
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8]),
        img_size=32,
        drop_path_rate=0.),
    head=dict(num_classes=10, in_channels=256),
    train_cfg=None)

# ---- data: mmpretrain's CustomDataset reads <data_root>/<data_prefix>/<class folder>/<image>
# (classes = sorted folder names). `_delete_=True` drops the base dataset's ImageNetFolder keys
# (`split`, ...), which CustomDataset does not accept.
data_preprocessor = dict(num_classes=10)
data_root = 'data/digits'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=32, padding=2),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=0,  # 32x32 PNGs decode in microseconds; use workers for real images
    persistent_workers=False,
    pin_memory=False,
    dataset=dict(
        _delete_=True, type='CustomDataset', data_root=data_root, data_prefix='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=120,
    num_workers=0,  # 32x32 PNGs decode in microseconds; use workers for real images
    persistent_workers=False,
    pin_memory=False,
    dataset=dict(
        _delete_=True, type='CustomDataset', data_root=data_root, data_prefix='val',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(topk=(1, ))
test_evaluator = val_evaluator

# ---- schedule: AdamW (the base's, with its no-decay rules), lr 2e-3 for a batch of 64,
# 1 warm-up epoch then cosine, 10 epochs, validation every 5 epochs.
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1),
]
train_cfg = dict(max_epochs=10, val_interval=5)
auto_scale_lr = dict(base_batch_size=64)

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=5, max_keep_ckpts=1, save_best=None))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
