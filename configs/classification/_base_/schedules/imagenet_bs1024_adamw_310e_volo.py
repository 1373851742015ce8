# VOLO's schedule (main.py defaults, README for D1): AdamW lr 1.6e-3 for a total batch of 1024,
# weight decay 0.05, 20 linear warm-up epochs from 1e-6, cosine to 1e-5 at epoch 300, then 10
# cool-down epochs at 1e-5 (timm's scheduler: 310 epochs), no gradient clipping.
# No weight decay on norms, biases, other 1-D parameters, the position embedding and the cls
# token (VOLO's no_weight_decay); the mixers' relative position tables as in our 300e schedule.
_base_ = ['./imagenet_bs1024_adamw_300e.py']

optim_wrapper = dict(
    optimizer=dict(lr=1.6e-3),
    paramwise_cfg=dict(custom_keys={
        '.pos_embed': dict(decay_mult=0.0),
        '.cls_token': dict(decay_mult=0.0),
    }),
    clip_grad=None)

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 1.6e-3, by_epoch=True, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20, end=300),
]

# ResumableEpochBasedTrainLoop: mmengine's epoch loop, resuming mid-epoch checkpoints exactly
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=310)
