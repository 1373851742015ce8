# Table 13: Twins-SVT-S (mmpretrain's SVT: locally-grouped self-attention in even layers,
# global sub-sampled attention in odd ones), ImageNet-1k 224x224, Twins' training recipe.
_base_ = [
    './_base_/models/svt-small_224.py',
    './_base_/datasets/imagenet_bs128_swin_224.py',
    './_base_/schedules/imagenet_bs1024_adamw_300e_twins.py',
    './_base_/default_runtime.py',
]
