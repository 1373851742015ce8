# ImageNet-1k in mmpretrain's folder layout, with the Swin / DeiT training recipe:
#
#   data/imagenet/train/<wnid>/*.JPEG     data/imagenet/val/<wnid>/*.JPEG
#
# (``meta/{train,val}.txt`` annotation files are used when present, never required).
# ``ImageNetFolder`` is mmpretrain's ``ImageNet`` with strict checks: a missing split folder,
# an empty class folder or a class count that differs from ``metainfo.classes`` stop the run
# with the path and the expected layout instead of a warning.
_base_ = ['./imagenet_swin_224_pipelines.py']

dataset_type = 'ImageNetFolder'
data_root = 'data/imagenet'
data_preprocessor = dict(num_classes=1000)

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    # workers started afresh each epoch and seeded from the epoch's state (ExactResumeHook):
    # a resumed run replays the augmentations exactly; persistent workers would carry their
    # random state across epochs, which no checkpoint holds
    persistent_workers=False,
    worker_init_fn=dict(type='epoch_seeded_worker_init_fn'),
    # a last batch of one image breaks BatchNorm in training (D-DW kernel generator, BN FFNs)
    drop_last=True,
    pin_memory=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 pipeline={{_base_.train_pipeline}}),
    sampler=dict(type='DefaultSampler', shuffle=True),
)

val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='val',
                 pipeline={{_base_.test_pipeline}}),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))

# ImageNet's labelled test set is its val split
test_dataloader = val_dataloader
test_evaluator = val_evaluator
