# VOLO-D1 classifier (Table 13): VOLONet (outlooker stage with a swappable mixer, transformer
# and class-attention stages) and VOLO's head (cls-token logits + 0.5 x the token maximum of an
# auxiliary linear layer), label smoothing 0.1, drop path 0.1.
# Left out: token labelling (MixToken and the dense token-label targets of the official
# training); VOLO's main.py then uses no Mixup/CutMix, and neither do we.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VOLONet',
        arch='d1',
        mixer=dict(type='OutlookAttention', kernel_size=3, stride=2),
        img_size=224,
        drop_path_rate=0.1),
    head=dict(
        type='VOLOClsHead',
        num_classes=1000,
        in_channels=384,
        init_cfg=None,  # the classifier's init_cfg below covers the head
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
    ],
)
