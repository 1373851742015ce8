# Table 13: Twins-SVT-S with every locally-grouped self-attention replaced by the 7x7
# depth-wise conv block (mmdwnet's DWConv) through MixerSwap; everything else unchanged.
_base_ = ['./svt-small_8xb128_in1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='MixerSwap',
        backbone={{_base_.model.backbone}},
        replace='LocallyGroupedSelfAttention',
        mixer=dict(type='DWConv', kernel_size=7),
        layout='tokens'))
