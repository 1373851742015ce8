# Swin's ImageNet-22K pre-training recipe (configs/swin/*_22k.yaml, base models): 90 epochs,
# AdamW lr 1e-3 for a total batch of 4096 (1.25e-4 per 512), weight decay 0.05, 5 linear warm-up
# epochs from lr / 1000 (1.25e-7 per 512), cosine to 1e-5 (1.25e-6 per 512), gradient clip 5.0;
# same no-decay rules as the 300-epoch ImageNet-1K schedule.
_base_ = ['./imagenet_bs1024_adamw_300e.py']

optim_wrapper = dict(optimizer=dict(lr=1.25e-4 * 4096 / 512, weight_decay=0.05))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1.25e-6 * 4096 / 512, by_epoch=True, begin=5),
]

# ResumableEpochBasedTrainLoop: mmengine's epoch loop, resuming mid-epoch checkpoints exactly
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=90)
# ImageNet-21k has no validation split (the dataset base sets no val / test loaders)
val_cfg = None
test_cfg = None

# ``--auto-scale-lr`` rescales lr by (GPUs x batch per GPU) / 4096, e.g. for 64 GPUs x 64 images
auto_scale_lr = dict(base_batch_size=4096)
