# Fine-tuning schedule at a higher resolution (paper Table 14, Appendix E): 30 epochs, AdamW
# lr 1e-5 for a total batch of 1024, weight decay 1e-8 (the leaf configs set drop path 0.1).
# The shape follows Swin's 224 -> 384 recipe: 5 linear warm-up epochs, cosine to lr / 100,
# gradient clip 5.0; same no-decay rules as the 300-epoch schedule.
_base_ = ['./imagenet_bs1024_adamw_300e.py']

optim_wrapper = dict(optimizer=dict(lr=1e-5, weight_decay=1e-8))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-7, by_epoch=True, begin=5),
]

train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
