# Swin's fine-tuning recipe (its 22K -> 1K and 224 -> 384 fine-tunes): 30 epochs, AdamW lr 4e-5
# for a total batch of 1024 (2e-5 per 512), weight decay 1e-8, 5 linear warm-up epochs from
# lr / 1000, cosine to lr / 100 (4e-7), gradient clip 5.0; same no-decay rules as the 300-epoch
# schedule.  ``--auto-scale-lr`` rescales lr by (GPUs x batch per GPU) / 1024.
_base_ = ['./imagenet_bs1024_adamw_300e.py']

optim_wrapper = dict(optimizer=dict(lr=2e-5 * 1024 / 512, weight_decay=1e-8))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=2e-7 * 1024 / 512, by_epoch=True, begin=5),
]

# ResumableEpochBasedTrainLoop: mmengine's epoch loop, resuming mid-epoch checkpoints exactly
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=30, val_interval=1)
