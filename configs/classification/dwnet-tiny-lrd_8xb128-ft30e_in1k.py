# Fine-tuning DWNet-T with layer-wise learning-rate decay (BEiT / mmpretrain's recipe): the
# 30-epoch fine-tuning schedule, with mmpretrain's LearningRateDecayOptimWrapperConstructor.
# Each parameter's lr is base_lr * 0.75 ** (num_layers - 1 - depth), with depth from
# LocalMixerNet.get_layer_depth: patch embedding 0, block j of stage i sum(depths[:i]) + j + 1,
# patch merging with its stage's last block, final norm / neck / head num_layers - 1
# (num_layers = sum(depths) + 2 = 14 for tiny). The no-decay rules of the base schedule still
# apply. To fine-tune on your own data, combine it with docs/custom_dataset.md.
_base_ = [
    './_base_/models/tiny_224.py',
    './_base_/datasets/imagenet_bs128_swin_224.py',
    './_base_/schedules/imagenet_bs1024_adamw_30e_ft.py',
    './_base_/default_runtime.py',
]

model = dict(backbone=dict(type='DWNet', drop_path_rate=0.1))

optim_wrapper = dict(
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.75))

# The converted official (or your own) 224 checkpoint:
#   python tools/model_converters/official2mmdwnet.py dwnet_tiny_224.pth \
#       checkpoints/dwnet-tiny_in1k.pth
load_from = 'checkpoints/dwnet-tiny_in1k.pth'
