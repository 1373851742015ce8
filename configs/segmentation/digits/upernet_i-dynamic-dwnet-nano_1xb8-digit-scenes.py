# UPerNet + nano I-D-DWNet on the digit scenes: the DWNet digit-scenes config (arch, data, loss,
# schedule) with the mixer of the I-D-DWNet preset, fine-tuned from the I-D-DWNet classification
# demo's checkpoint.
_base_ = ['./upernet_dwnet-nano_1xb8-digit-scenes.py']

pretrained = 'work_dirs/demo/i-dynamic-dwnet-nano_1xb64-30e_digits-on-photos-32px/epoch_30.pth'
model = dict(backbone=dict(type='IDynamicDWNet', init_cfg=dict(checkpoint=pretrained)))
