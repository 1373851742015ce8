# Fine-tuning DWNet-T with layer-wise learning-rate decay (decay 0.75 per layer, see the
# schedule). To fine-tune on your own data, combine it with docs/custom_dataset.md.
_base_ = [
    './_base_/models/tiny_224.py',
    './_base_/datasets/imagenet_bs128_swin_224.py',
    './_base_/schedules/imagenet_bs1024_adamw_30e_ft_lrd.py',
    './_base_/default_runtime.py',
]

model = dict(backbone=dict(type='DWNet', drop_path_rate=0.1))

# An ImageNet-1k DWNet-T checkpoint: the official dwnet_tiny_224.pth loads as released
# (converted on load), as does an mmdwnet checkpoint.
load_from = 'checkpoints/dwnet_tiny_224.pth'
