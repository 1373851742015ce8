"""Centering-calibrated BatchNorm (the paper's Table 12, "CC-BN").

Representative Batch Normalization (Gao et al., CVPR 2021) adds, before an ordinary BN, a
*centering calibration* that mixes each sample's own channel mean back into its features::

    x_c[n, c, ...] = x[n, c, ...] + w_m[c] * mean_{spatial}(x[n, c, ...])
    y = BN(x_c)                                   (ordinary affine BatchNorm)

``w_m`` (one value per channel) starts at 0, so a fresh CC-BN is a plain BN.  The paper uses the
centering half only (no scaling calibration).  Both layers are registered as norm layers
(``type='CCBN'`` / ``type='SyncCCBN'``) and build wherever a ``norm_cfg`` is read through
``mmcv.cnn.build_norm_layer`` (e.g. ``DWNet(norm2_cfg=dict(type='CCBN'))``).

Conv-BN fusion: the per-sample mean makes a CC-BN depend on the whole feature map, so it cannot
be folded into the conv before it.  The BN is a *child* of the layer (not the layer itself), so
``mmcv.cnn.fuse_conv_bn`` -- which folds a ``_BatchNorm`` that directly follows a conv -- leaves
CC-BN layers and their convs untouched (the result stays exact), and the CPU fast path, which
only folds plain BatchNorms into the FFN, runs them as modules.  Layer-type checks that look for
``_BatchNorm`` (``norm_eval``, SyncBN reverting, no weight decay on norms) find the inner BN.
"""
from typing import Any, List

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from mmdwnet.registry import register_model


@register_model()
class CCBN(nn.Module):
    """Centering-calibrated BatchNorm: ``BN(x + w_m * mean_spatial(x))``.

    Args:
        num_features (int): C.
        eps (float): BN epsilon. Default: 1e-5.
        momentum (float): BN running-statistics momentum. Default: 0.1.
        affine (bool): learnable BN scale and shift. Default: True.
        track_running_stats (bool): BN running statistics. Default: True.

    Shape:
        (N, C, *) -> (N, C, *); with no spatial dims (N, C) the sample mean is the value itself.
    """
    _abbr_ = 'ccbn'
    bn_type = nn.BatchNorm2d

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.centering_weight = nn.Parameter(torch.zeros(num_features))
        self.bn = self.bn_type(num_features, eps=eps, momentum=momentum, affine=affine,
                               track_running_stats=track_running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f'{type(self).__name__}({self.num_features}) expects (N, '
                             f'{self.num_features}, ...) channels-first inputs, got '
                             f'{tuple(x.shape)}')
        weight = self.centering_weight.view(1, -1, *([1] * (x.dim() - 2)))
        if x.dim() > 2:
            x = x + weight * x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
        else:
            x = x + weight * x
        if isinstance(self.bn, nn.BatchNorm2d) and x.dim() != 4:
            # BatchNorm2d checks for 4-D inputs; the normalisation itself is per channel
            shape = x.shape
            return self.bn(x.reshape(shape[0], shape[1], -1, 1)).reshape(shape)
        return self.bn(x)

    def extra_repr(self) -> str:
        return f'num_features={self.num_features}'


@register_model()
class SyncCCBN(CCBN):
    """:class:`CCBN` whose BN is an ``nn.SyncBatchNorm`` (statistics over all GPUs).

    mmengine's Runner turns the inner SyncBN into a plain BN when it does not run distributed,
    as it does for ``type='SyncBN'``.
    """
    _abbr_ = 'ccbn'
    bn_type = nn.SyncBatchNorm


def is_channels_first_norm(layer: nn.Module) -> bool:
    """True for norms that take (N, C, ...) inputs (BN, SyncBN, GN, CC-BN), False for LN."""
    return isinstance(layer, (_BatchNorm, nn.SyncBatchNorm, nn.GroupNorm, CCBN))


def registered_norm_types() -> List[str]:
    """Names of the norm layers a ``norm_cfg`` can use (mmcv's ``BN``, ``LN``, ``GN``, ``IN``,
    ``SyncBN``... and mmdwnet's ``CCBN``, ``SyncCCBN``): the norm classes of mmengine's root
    ``MODELS`` registry, which ``mmcv.cnn.build_norm_layer`` reads."""
    from mmengine.registry import MODELS
    norms = (_NormBase, nn.GroupNorm, nn.LayerNorm, CCBN)
    return sorted(name for name, cls in MODELS.module_dict.items()
                  if isinstance(cls, type) and issubclass(cls, norms))


def check_norm_type(layer_type: Any, where: str = 'norm_cfg') -> None:
    """Raise a KeyError naming ``layer_type`` and the known norm layers unless it is one.

    (``mmcv.cnn.build_norm_layer`` reports an unknown type as "Cannot find None in registry".)
    A class instead of a name is accepted as is.
    """
    if isinstance(layer_type, type):
        return
    from mmengine.registry import MODELS
    cls = MODELS.get(layer_type) if isinstance(layer_type, str) else None
    if cls is not None and issubclass(cls, nn.Module):
        return
    known = registered_norm_types()
    from mmdwnet.registry import close_matches
    near = close_matches(str(layer_type), known, n=3) if isinstance(layer_type, str) else []
    hint = f' (did you mean {" or ".join(map(repr, near))}?)' if near else ''
    raise KeyError(f'{where}: unknown norm layer type {layer_type!r}{hint}; the known norm '
                   f'types are {", ".join(known)}. Use one of them, or register your layer in '
                   "mmengine's MODELS registry (mmdwnet.registry.register_model) before building")
