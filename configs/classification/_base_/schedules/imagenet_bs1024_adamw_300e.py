# AdamW, lr 1e-3 for a total batch of 1024 (5e-4 per 512, as Swin / DWNet), weight decay 0.05,
# 300 epochs: 20 linear warm-up epochs (updated every iteration) then cosine to 1e-5.
#
# No weight decay on normalization layers, biases, any other 1-D parameter (e.g. the dynamic
# conv bias) and the relative position tables -- the official Swin/DWNet rule ("1-D, *.bias,
# relative_position_bias_table").  Static aggregation weights keep the decay: depth-wise conv
# kernels and Local MLP's ``local_weight`` are weights of a linear map like any conv/linear
# kernel (the official rule decays every >= 2-D parameter), spelled out below.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-4 * 1024 / 512, weight_decay=0.05, eps=1e-8,
                   betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.relative_position_bias_table': dict(decay_mult=0.0),
            '.local_weight': dict(decay_mult=1.0),
        }),
    clip_grad=dict(max_norm=5.0),
)

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20),
]

# ResumableEpochBasedTrainLoop: mmengine's epoch loop, resuming mid-epoch checkpoints exactly
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# ``--auto-scale-lr`` rescales lr by (GPUs x batch per GPU) / 1024
auto_scale_lr = dict(base_batch_size=1024)
