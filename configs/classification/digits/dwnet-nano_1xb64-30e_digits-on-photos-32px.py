# The detection and segmentation digits configs' pretraining (their backbone init_cfg; trained by
# `make demo`): the digits classifier of dwnet-nano_1xb64-10e_digits-32px.py, 80% of its training
# images repainted on crops of scikit-image's photos at a random scale, place and contrasting
# colour (PaintOnPhoto), 30 epochs. Digits that look like the scenes' digits: from this checkpoint
# Cascade Mask R-CNN reached bbox / segm mAP 0.665 / 0.584 on the digit scenes, against 0.605 /
# 0.558 from the plain classifier and 0.606 / 0.549 from scratch (docs/downstream.md).
# Validation stays the plain 32x32 digits.
_base_ = ['./dwnet-nano_1xb64-10e_digits-32px.py']

custom_imports = dict(imports=['mmdwnet', 'mmdwnet.datasets'], allow_failed_imports=False)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PaintOnPhoto', prob=0.8, scale=(0.5, 1.0)),
    dict(type='RandomCrop', crop_size=32, padding=2),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
train_cfg = dict(max_epochs=30, val_interval=10)
