"""Helpers shared by the detection and segmentation demos."""
import os.path as osp
from pathlib import Path

import mmcv
import numpy as np


def read_rgb_image(img):
    """``img`` (path or (H, W, 3) RGB array) -> (RGB array to draw on, input for the model).

    The toolboxes' ``inference_*`` functions take a path, or an array in BGR order.
    """
    if isinstance(img, (str, Path)):
        if not osp.isfile(img):
            raise FileNotFoundError(f'image {img} does not exist')
        return mmcv.imread(str(img), channel_order='rgb'), str(img)
    image = np.ascontiguousarray(img)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected an (H, W, 3) RGB image, got shape {image.shape}')
    return image, image[..., ::-1].copy()


def dataset_meta_of(model, datasets, keys=('classes', ), what='the class names'):
    """``model.dataset_meta`` when it has ``keys``, else the METAINFO of the config's test
    dataset class (from the ``datasets`` registry) with the config's ``metainfo`` override."""
    meta = getattr(model, 'dataset_meta', None)
    if meta and all(k in meta for k in keys):
        return dict(meta)
    dataset = model.cfg.test_dataloader.dataset
    dataset_cls = datasets.get(dataset.type)
    if dataset_cls is None:
        raise KeyError(f'unknown dataset type {dataset.type!r} in the config\'s test_dataloader; '
                       f'cannot tell {what} to draw with')
    meta = dict(dataset_cls.METAINFO)
    meta.update(dataset.get('metainfo') or {})
    return meta
