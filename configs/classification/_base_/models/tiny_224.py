# Tiny classifier of the paper's Table 2: LocalMixerNet backbone (the leaf config picks the
# mixer family through the preset type), final LN, global average pooling, linear head,
# label smoothing 0.1, Mixup 0.8 / CutMix 1.0 batch augments.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='DWNet', arch='tiny', img_size=224, drop_path_rate=0.2),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        init_cfg=None,  # the classifier's init_cfg below covers the head
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
    ],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)
