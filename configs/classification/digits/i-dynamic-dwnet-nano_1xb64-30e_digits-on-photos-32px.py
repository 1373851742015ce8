# I-D-DWNet's pretraining for the detection and segmentation digits configs: the DWNet one
# (digits repainted on photos, 30 epochs; see there) with the mixer of the I-D-DWNet preset.
_base_ = ['./dwnet-nano_1xb64-30e_digits-on-photos-32px.py']

model = dict(backbone=dict(type='IDynamicDWNet'))
