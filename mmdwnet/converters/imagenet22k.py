"""ImageNet-22K -> ImageNet-1K classification heads, as the official Swin fine-tuning code does.

``map22kto1k.txt`` (from microsoft/Swin-Transformer ``data/map22kto1k.txt``, MIT licence,
Copyright (c) Microsoft Corporation) holds 1000 integers: for each ImageNet-1K class, in
ImageNet-1K order, its index in the 21,841-class ImageNet-22K label space.  The official code
initialises a 1000-class model from a 22K checkpoint with ``head.weight[map]``,
``head.bias[map]``.

Two 22K label spaces meet here:

* 21,841 classes: the official Swin / DemystifyLocalViT 22K checkpoints (and mmpretrain's own
  in21k model configs, ``num_classes=21841``);
* 21,842 classes: mmpretrain's ``_base_/datasets/imagenet21k_bs128.py`` sets
  ``num_classes=21842``: one row more than the 21,841 class folders, so with that data rows
  ``0 .. 21840`` are the official classes in the same (sorted folder) order and the last row is
  never a label.  It is dropped, never shifted into the mapping.

Any other row count is not a 22K head and :func:`map_22k_to_1k` refuses it.
"""
from functools import lru_cache
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor

MAP_FILE = Path(__file__).with_name('map22kto1k.txt')
IN1K_CLASSES = 1000
IN22K_CLASSES = 21841  # the official label space the map indexes
IN22K_CLASSES_MMPRETRAIN = 21842  # mmpretrain's imagenet21k_bs128.py: 21841 + one unused row
IN22K_HEAD_ROWS = (IN22K_CLASSES, IN22K_CLASSES_MMPRETRAIN)


@lru_cache(maxsize=1)
def load_22k_to_1k_map() -> Tensor:
    """The 1000 ImageNet-22K class indices of the ImageNet-1K classes (LongTensor, (1000,))."""
    values = [int(line) for line in MAP_FILE.read_text().split()]
    index = torch.tensor(values, dtype=torch.long)
    if index.numel() != IN1K_CLASSES or index.min() < 0 or index.max() >= IN22K_CLASSES \
            or index.unique().numel() != IN1K_CLASSES:
        raise RuntimeError(f'{MAP_FILE} is damaged: expected {IN1K_CLASSES} distinct indices in '
                           f'[0, {IN22K_CLASSES}), got {index.numel()} values')
    return index


def is_22k_to_1k(checkpoint_rows: int, model_rows: int) -> bool:
    """Whether a head of ``checkpoint_rows`` classes maps onto a ``model_rows``-class model."""
    return checkpoint_rows in IN22K_HEAD_ROWS and model_rows == IN1K_CLASSES


def map_22k_to_1k(weight: Tensor,
                  bias: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
    """Select the ImageNet-1K rows of a 22K classification head.

    Args:
        weight (Tensor): (21841 | 21842, C) head weight.
        bias (Tensor | None): (21841 | 21842,) head bias.

    Returns:
        tuple[Tensor, Tensor | None]: (1000, C) weight and (1000,) bias, row ``i`` being the
        22K row of ImageNet-1K class ``i``.
    """
    rows = weight.shape[0]
    if rows not in IN22K_HEAD_ROWS:
        raise ValueError(f'a 22K head has {IN22K_CLASSES} (official) or '
                         f'{IN22K_CLASSES_MMPRETRAIN} (mmpretrain) rows, got {rows}')
    if bias is not None and bias.shape[0] != rows:
        raise ValueError(f'head bias has {bias.shape[0]} rows, weight {rows}')
    index = load_22k_to_1k_map().to(weight.device)
    return weight[index].clone(), None if bias is None else bias[index].clone()
