"""Segmentation decode heads (mmseg)."""
from typing import Any, List, Sequence, Union

import torch
from mmseg.models.decode_heads import UPerHead
from mmseg.models.losses import CrossEntropyLoss
from torch import Tensor

from mmdwnet.registry import register_model

__all__ = ['ClassWeightAdjustedUPerHead', 'cross_entropy_class_weight']


def cross_entropy_class_weight(
        losses: Union[torch.nn.Module, torch.nn.ModuleList]) -> Sequence[float]:
    """The class weights of the first class-weighted :class:`CrossEntropyLoss` among a decode
    head's ``loss_decode`` (one loss module or a ``ModuleList``); ``ValueError`` when none."""
    for loss in losses if isinstance(losses, torch.nn.ModuleList) else [losses]:
        if isinstance(loss, CrossEntropyLoss) and loss.class_weight is not None:
            return loss.class_weight
    raise ValueError('ClassWeightAdjustedUPerHead needs a CrossEntropyLoss with class_weight in '
                     'loss_decode (it undoes those weights at inference); without class '
                     'weights use UPerHead.')


@register_model
class ClassWeightAdjustedUPerHead(UPerHead):
    """UPerHead trained with a class-weighted cross-entropy that predicts the unweighted classes.

    A cross-entropy whose class ``c`` weighs ``w_c`` is minimised by scores ``q_c`` proportional
    to ``w_c p_c`` (``p_c`` the class posterior), so the argmax of the trained logits favours the
    heavy classes: a background weighted 0.1 against rare foreground classes makes every
    foreground region too large.  This head subtracts ``log w_c`` from the logits it predicts,
    which turns the scores back into ``p_c`` (logit adjustment); training and its loss are those
    of :class:`UPerHead`.  Arguments: those of :class:`UPerHead`; ``loss_decode`` must hold a
    ``CrossEntropyLoss`` with ``class_weight`` (:func:`cross_entropy_class_weight`).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        weight = torch.as_tensor(cross_entropy_class_weight(self.loss_decode), dtype=torch.float)
        if weight.numel() != self.out_channels or bool((weight <= 0).any()):
            raise ValueError(f'class_weight {weight.tolist()} must hold {self.out_channels} '
                             'positive weights, one per class')
        self.register_buffer('log_class_weight', weight.log().view(1, -1, 1, 1),
                             persistent=False)

    def predict_by_feat(self, seg_logits: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """(N, C, h, w) logits -> (N, C, H, W) at the input size, minus ``log w_c``."""
        return super().predict_by_feat(seg_logits, batch_img_metas) - self.log_class_weight
