# ImageNet-21k for pre-training (paper Appendix F, "the same training settings as Swin"), with
# the augmentation of the ImageNet-1k configs.  Dataset type, folder and class count are those
# of mmpretrain's ``_base_/datasets/imagenet21k_bs128.py`` (whose plain crop-and-flip pipeline
# is not Swin's recipe, so it is not inherited; a test keeps the two in step):
#
#   data/imagenet21k/train/<wnid>/*.JPEG     (meta/train.txt is used when present: it saves a
#                                              scan of ~14M files)
#
# 21,842 classes (one row more than the 21,841 of the official files; the 22K -> 1K fine-tuning
# configs map either head, see mmdwnet.converters.imagenet22k).  256 images per GPU: 16 GPUs
# make the recipe's total batch of 4096 (other layouts: --auto-scale-lr).  ImageNet-21k has no
# validation split, so there are no validation / test loaders.
_base_ = ['./imagenet_swin_224_pipelines.py']

dataset_type = 'ImageNet21k'
data_preprocessor = dict(num_classes=21842)

train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    # workers started afresh each epoch and seeded from the epoch's state (ExactResumeHook):
    # a resumed run replays the augmentations exactly; persistent workers would carry their
    # random state across epochs, which no checkpoint holds
    persistent_workers=False,
    worker_init_fn=dict(type='epoch_seeded_worker_init_fn'),
    # a last batch of one image breaks BatchNorm in training (D-DW kernel generator, BN FFNs)
    drop_last=True,
    pin_memory=True,
    dataset=dict(type=dataset_type, data_root='data/imagenet21k', split='train',
                 pipeline={{_base_.train_pipeline}}),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
