# I-D-DWNet on the digits: the DWNet digits config (arch, data, schedule) with the mixer of
# the I-D-DWNet preset. See docs/custom_dataset.md.
_base_ = ['./dwnet-nano_1xb64-10e_digits-32px.py']

model = dict(backbone=dict(type='IDynamicDWNet'))
