# The 30-epoch fine-tuning schedule with layer-wise learning-rate decay (BEiT / mmpretrain's
# recipe): mmpretrain's LearningRateDecayOptimWrapperConstructor gives each parameter
# lr = base_lr * layer_decay_rate ** (num_layers - 1 - depth), with depth from the backbone's
# get_layer_depth (LocalMixerNet: patch embedding 0, block j of stage i sum(depths[:i]) + j + 1,
# patch merging with its stage's last block, final norm / neck / head num_layers - 1;
# num_layers = sum(depths) + 2 = 14 for tiny). The no-decay rules of the base schedule still apply.
_base_ = ['./imagenet_bs1024_adamw_30e_ft.py']

optim_wrapper = dict(
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.75))
