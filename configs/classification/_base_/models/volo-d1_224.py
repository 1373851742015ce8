# VOLO-D1 classifier (Table 13): the tiny classifier's loss (label smoothing 0.1) and init, with
# VOLONet (outlooker stage with a swappable mixer, transformer and class-attention stages) and
# VOLO's head (cls-token logits + 0.5 x the token maximum of an auxiliary linear layer) on the
# backbone's (cls token, patch tokens), no pooling neck, drop path 0.1.
# Left out: token labelling (MixToken and the dense token-label targets of the official
# training); VOLO's main.py then uses no Mixup/CutMix, and neither do we.
_base_ = './tiny_224.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='VOLONet',
        arch='d1',
        mixer=dict(type='OutlookAttention', kernel_size=3, stride=2),
        img_size=224,
        drop_path_rate=0.1),
    neck=None,
    head=dict(type='VOLOClsHead', in_channels=384),
    train_cfg=None,
)
