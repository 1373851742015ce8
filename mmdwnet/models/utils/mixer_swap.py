"""Put mmdwnet's spatial mixers into other backbones by replacing modules of a given type.

The paper's claim is about the spatial mixer, not one macro architecture: Table 13 replaces
Twins-SVT's locally-grouped self-attention with depth-wise convolution and keeps the rest.
:func:`swap_mixers` does that for any built model; the registered builder :func:`MixerSwap`
does it from a config::

    backbone=dict(
        type='MixerSwap',
        backbone=dict(type='SVT', arch='small'),        # any registered backbone
        replace='LocallyGroupedSelfAttention',          # type (class name) of the modules
        mixer=dict(type='DWConv', kernel_size=7),       # any mmdwnet mixer
        layout='tokens')                                # how the old modules were called

Every mmdwnet mixer maps (B, H, W, C) to (B, H, W, C); :class:`MixerAdapter` calls it the way
the replaced module was called (``layout``).  The mixer gets the ``embed_dims`` and
``num_heads`` of the module it replaces (its attributes), unless the config sets them.
"""
import copy
import importlib
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.registry import MODELS as ROOT_MODELS

from mmdwnet.registry import register_model
from ..layers.dense import use_fast_linears
from ..mixers.builder import build_mixer

LAYOUTS = ('nhwc', 'nchw', 'tokens')
# attributes of the replaced module that become the mixer's build context
CONTEXT_ATTRS = {'embed_dims': ('embed_dims', 'dim', 'channels', 'in_channels'),
                 'num_heads': ('num_heads', 'heads')}


class MixerAdapter(nn.Module):
    """Call a (B, H, W, C) mixer with the signature of the module it replaces.

    Args:
        mixer (nn.Module): an mmdwnet mixer, (B, H, W, C) -> (B, H, W, C).
        layout (str): how the replaced module was called:

            * ``'nhwc'``: ``forward(x)`` with x (B, H, W, C);
            * ``'nchw'``: ``forward(x)`` with x (B, C, H, W);
            * ``'tokens'``: ``forward(x, hw_shape)`` with x (B, H*W, C), row-major tokens
              (Twins, PVT, mmcv/mmpretrain transformer layers).
    """

    def __init__(self, mixer: nn.Module, layout: str = 'nhwc') -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f'MixerAdapter: layout must be one of {LAYOUTS}, got {layout!r}')
        self.mixer, self.layout = mixer, layout

    def forward(self, x: torch.Tensor,
                hw_shape: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """The wrapped mixer on ``x`` in :attr:`layout` (see the class docstring)."""
        if self.layout == 'nhwc':
            return self.mixer(x)
        if self.layout == 'nchw':
            return self.mixer(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if hw_shape is None:
            raise ValueError("MixerAdapter(layout='tokens') needs hw_shape=(H, W)")
        b, n, c = x.shape
        h, w = hw_shape
        if h * w != n:
            raise ValueError(f'MixerAdapter: hw_shape {tuple(hw_shape)} does not match the '
                             f'{n} tokens of the input')
        return self.mixer(x.reshape(b, h, w, c)).reshape(b, n, c)

    def extra_repr(self) -> str:
        return f'layout={self.layout!r}'


def _resolve_type(replace, model):
    """``replace`` (a class, a dotted import path or a class name) -> predicate on modules."""
    if isinstance(replace, type):
        return lambda m: isinstance(m, replace), replace.__name__
    if not isinstance(replace, str) or not replace:
        raise TypeError(f'replace must be a module class or its name, got {replace!r}')
    if '.' in replace:
        module_name, _, cls_name = replace.rpartition('.')
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f'replace={replace!r} is not an importable class ({e})') from e
        return lambda m: isinstance(m, cls), replace
    return lambda m: type(m).__name__ == replace, replace


def _context(module, overrides):
    context = {}
    for key, attrs in CONTEXT_ATTRS.items():
        for attr in attrs:
            if isinstance(getattr(module, attr, None), int):
                context[key] = getattr(module, attr)
                break
    context.update(overrides)
    if 'embed_dims' not in context:
        raise ValueError(f'swap_mixers: cannot tell the channels of {type(module).__name__} '
                         f'(no attribute {CONTEXT_ATTRS["embed_dims"]}); pass '
                         'context=dict(embed_dims=...)')
    return context


def swap_mixers(model: nn.Module,
                replace: Union[type, str],
                mixer: dict,
                layout: str = 'nhwc',
                context: Optional[dict] = None) -> List[str]:
    """Replace every submodule of type ``replace`` in ``model`` by an mmdwnet mixer, in place.

    Args:
        model (nn.Module): a built model or backbone.
        replace (type | str): the module type to replace: a class, its dotted import path
            (``'mmpretrain.models.backbones.twins.LocallyGroupedSelfAttention'``) or its class
            name (``'LocallyGroupedSelfAttention'``).
        mixer (dict): mixer config built through the registry, e.g.
            ``dict(type='DWConv', kernel_size=7)``.
        layout (str): how the replaced modules are called, see :class:`MixerAdapter`.
        context (dict | None): build arguments for every mixer (e.g. ``num_heads``), over the
            ``embed_dims``/``num_heads`` read from each replaced module.

    Returns:
        list[str]: the names of the replaced modules.

    Raises:
        ValueError: no submodule has that type (the message lists the types present).
    """
    if layout not in LAYOUTS:
        raise ValueError(f'swap_mixers: layout must be one of {LAYOUTS}, got {layout!r}')
    matches, type_name = _resolve_type(replace, model)
    targets = [name for name, m in model.named_modules() if name and matches(m)]
    if not targets:
        present = sorted({type(m).__name__ for m in model.modules()})
        raise ValueError(f'swap_mixers: {type(model).__name__} has no submodule of type '
                         f'{type_name!r}; its module types are {present}')
    for name in targets:
        parent_name, _, child = name.rpartition('.')
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        new = build_mixer(copy.deepcopy(mixer), **_context(old, context or {}))
        # the dense fast path, as the mixers get it inside a MixerBlock
        setattr(parent, child, MixerAdapter(use_fast_linears(new), layout))
    return targets


@register_model()
def MixerSwap(backbone: dict,
              replace: Union[type, str],
              mixer: dict,
              layout: str = 'nhwc',
              context: Optional[dict] = None) -> nn.Module:
    """Config builder: build ``backbone`` (any registered type, under the config's default
    scope) and :func:`swap_mixers` in it.  Returns the backbone itself, so its state dict keys,
    ``init_weights`` and outputs are those of the backbone.

    Example::

        backbone=dict(type='MixerSwap', backbone=dict(type='SVT', arch='small'),
                      replace='LocallyGroupedSelfAttention',
                      mixer=dict(type='DWConv', kernel_size=7), layout='tokens')
    """
    model = ROOT_MODELS.build(backbone)
    model.swapped_mixers = swap_mixers(model, replace, mixer, layout, context)
    return model


__all__ = ['MixerAdapter', 'MixerSwap', 'swap_mixers']
