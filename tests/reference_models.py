"""The repo's configs narrowed to the official reference models of ``../shared/reference``.

Each reference case is an official model with embed_dims 16 and depths [1, 2, 1, 1]; these
helpers take the repo config of the same family and change only the width/depth (and the
head sizes that follow from it), so loading a reference file exercises the real configs.
"""
import contextlib
import logging

import torch
from mmengine.config import Config

CONFIGS = {
    'cls_dwnet_narrow': 'classification/dwnet-tiny_8xb128_in1k.py',
    'cls_dynamic_dwnet_narrow': 'classification/dynamic-dwnet-tiny_8xb128_in1k.py',
    'cls_i_dynamic_dwnet_narrow': 'classification/i-dynamic-dwnet-tiny_8xb128_in1k.py',
    'cls_swin_narrow': 'classification/swin-tiny_8xb128_in1k.py',
    'det_dwnet_narrow': 'detection/cascade-mask-rcnn_dwnet-tiny_fpn_giou-4conv1f_ms-3x_coco.py',
    'det_dynamic_dwnet_narrow':
        'detection/cascade-mask-rcnn_dynamic-dwnet-tiny_fpn_giou-4conv1f_ms-3x_coco.py',
    'seg_dwnet_narrow': 'segmentation/upernet_dwnet-tiny_8xb2-160k_ade20k-512x512.py',
    'seg_dynamic_dwnet_narrow': 'segmentation/upernet_dynamic-dwnet-tiny_8xb2-160k_ade20k-512x512.py',
}
# per stage: attention heads (Swin), channels per weight group (I-D-DW, official convention)
HEADS = {'cls_swin_narrow': [1, 2, 4, 8], 'cls_i_dynamic_dwnet_narrow': [2, 4, 8, 16]}
WIDTHS = [16, 32, 64, 128]
NUM_CLASSES = 10
CLS_CASES = [c for c in CONFIGS if c.startswith('cls_')]
DET_CASES = [c for c in CONFIGS if c.startswith('det_')]


def narrow_config(repo_root, case, num_classes=NUM_CLASSES):
    """The repo config of ``case``'s family at the reference width and depth."""
    cfg = Config.fromfile(str(repo_root / 'configs' / CONFIGS[case]))
    backbone = cfg.model.backbone
    backbone.arch = dict(embed_dims=WIDTHS[0], depths=[1, 2, 1, 1],
                         num_heads=HEADS.get(case, [1, 1, 1, 1]))
    backbone.drop_path_rate = 0.
    backbone.init_cfg = None
    if case.startswith('cls_'):
        cfg.model.head.num_classes = num_classes
        cfg.data_preprocessor.num_classes = num_classes
        cfg.model.head.in_channels = WIDTHS[-1]
    elif case.startswith('det_'):
        cfg.model.neck.in_channels = WIDTHS
    else:
        cfg.model.decode_head.update(in_channels=WIDTHS, channels=32)
        cfg.model.auxiliary_head.update(in_channels=WIDTHS[2], channels=16)
    return cfg


def build(cfg):
    """``cfg.model`` built in the config's scope (as the toolboxes' registries do)."""
    from mmengine.registry import MODELS, DefaultScope, init_default_scope
    init_default_scope(cfg.default_scope)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model).eval()


def with_image_folder_test_set(cfg, folder):
    """Point ``cfg``'s test set at a small image folder (one sub-folder per class) made of
    scikit-image's sample photographs; returns ``cfg``."""
    import mmcv
    from skimage import data
    for name, image in (('astronaut', data.astronaut()), ('coffee', data.coffee())):
        (folder / name).mkdir(parents=True, exist_ok=True)
        mmcv.imwrite(image[..., ::-1], str(folder / name / f'{name}.png'))  # RGB -> BGR file
    cfg.test_dataloader = dict(
        batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CustomDataset', data_root=str(folder), with_label=True,
                     pipeline=cfg.test_dataloader.dataset.pipeline))
    cfg.test_evaluator = dict(type='Accuracy', topk=(1, ))
    return cfg


def max_diff(outs, refs):
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    refs = refs if isinstance(refs, (list, tuple)) else [refs]
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        assert o.shape == r.shape, (o.shape, r.shape)
    return max((o - r).abs().max().item() for o, r in zip(outs, refs))


@contextlib.contextmanager
def mmengine_messages():
    """Collect what mmengine's current logger prints (mmdwnet's load messages go there)."""
    from mmengine.logging import MMLogger
    messages = []

    class _Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = _Keep(level=logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
