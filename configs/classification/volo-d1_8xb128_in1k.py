# Table 13: VOLO-D1 (3x3 outlook attention in the first stage), ImageNet-1k 224x224, VOLO's
# training settings without token labelling (see _base_/models/volo-d1_224.py).
_base_ = [
    './_base_/models/volo-d1_224.py',
    './_base_/datasets/imagenet_bs128_volo_224.py',
    './_base_/schedules/imagenet_bs1024_adamw_310e_volo.py',
    './_base_/default_runtime.py',
]
