# Twins' schedule (the DeiT recipe of the official code): AdamW lr 5e-4 per 512 images (1e-3 for
# a total batch of 1024), weight decay 0.05, 5 linear warm-up epochs, cosine to 1e-5 at epoch
# 300; no weight decay on norms, biases and other 1-D parameters; no gradient clipping.
_base_ = ['./imagenet_bs1024_adamw_300e.py']

optim_wrapper = dict(clip_grad=None)

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5),
]
