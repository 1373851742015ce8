# Fine-tuning at 384x384 (paper Table 14, Appendix E): Swin's 30-epoch fine-tuning schedule with
# the paper's lr 1e-5 (total batch 1024) and weight decay 1e-8 (the leaf configs set drop path
# 0.1): 5 linear warm-up epochs, cosine to lr / 100, gradient clip 5.0.
_base_ = ['./imagenet_bs1024_adamw_30e_ft.py']

optim_wrapper = dict(optimizer=dict(lr=1e-5, weight_decay=1e-8))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-7, by_epoch=True, begin=5),
]
