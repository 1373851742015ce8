"""The mixer contract: :class:`SpatialMixer`, its build context and the ``MIXERS`` registry.

A spatial mixer maps (B, H, W, C) to (B, H, W, C) and is all that changes between the paper's
models.  Adding one is one file and one config::

    # my_mixer.py, anywhere on the path; the config says
    # custom_imports=dict(imports=['mmdwnet', 'my_mixer']), model.backbone.mixer=dict(type='MyMixer')
    import torch.nn as nn
    from mmdwnet.models.mixers import MIXERS, SpatialMixer

    @MIXERS.register_module()
    class MyMixer(SpatialMixer):
        def __init__(self, embed_dims: int, kernel_size: int = 3, stage=None) -> None:
            super().__init__()
            self.conv = nn.Conv2d(embed_dims, embed_dims, kernel_size,
                                  padding=kernel_size // 2, groups=embed_dims)
            self.proj = nn.Linear(embed_dims, embed_dims)   # plain nn.Linear: the block gives
                                                            # it the CPU fast path
        def forward(self, x):                               # (B, H, W, C) -> (B, H, W, C)
            return self.proj(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))

What a mixer may implement:

* ``__init__`` -- its own options (from the config, passed as given, so a typo raises) and any
  of the :class:`MixerContext` fields it names (filled in by the backbone unless the config
  sets them): ``embed_dims``, ``num_heads``, ``input_resolution``, ``shift``,
  ``pad_to_window``, ``stage``;
* :meth:`SpatialMixer.aggregation` -- the analysis hook of
  :mod:`mmdwnet.analysis.connectivity` (the base raises :class:`MixerNotProbeable`);
* :meth:`SpatialMixer.resize_entry` -- how a parameter follows a new kernel/window size
  (:meth:`SpatialMixer.resize_state_dict`, Table 14's fine-tuning at 384 px; the base raises
  :class:`ResizeError`).

Aggregation submodules with input-dependent weights may offer ``frozen(x)``: the aggregation
with the weights generated from ``x`` held fixed (see :class:`~.dwconv.DynamicDWAggregate`).
"""
import dataclasses
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.registry import Registry

from mmdwnet.registry import MODELS, register_model
from ..layers.resize import ResizeError

__all__ = ['MIXERS', 'MixerContext', 'MixerNotProbeable', 'SpatialMixer', 'register_mixer']

# A child of mmdwnet's model registry: a mixer registered here only (e.g. from a custom_imports
# module) builds as a backbone's mixer; ``build_mixer`` also finds mixers registered in MODELS.
MIXERS = Registry('mixer', parent=MODELS, scope='mmdwnet', locations=['mmdwnet.models.mixers'])


def register_mixer(cls: Optional[type] = None, *,
                   name: Optional[str] = None) -> Union[type, Callable[[type], type]]:
    """Register a mixer of this package into :data:`MIXERS` and (as every mmdwnet module, so
    ``type='DWConv'`` keeps building anywhere) into the model registries."""

    def _register(mixer_cls: type) -> type:
        MIXERS.register_module(name=name, module=mixer_cls)
        return register_model(mixer_cls, name=name)

    return _register(cls) if cls is not None else _register


@dataclasses.dataclass(frozen=True)
class MixerContext:
    """What the backbone knows about the place of a mixer, offered to its ``__init__``.

    A mixer receives the fields its ``__init__`` names (and that its config does not set).

    Attributes:
        embed_dims (int): C, the channels of the stage.
        num_heads (int): the stage's heads: attention heads, or weight groups for mixers that
            share one weight among the channels of a group. Default: 1.
        input_resolution (tuple[int, int] | None): nominal (H, W) of the stage's maps (for
            position-specific weights). Default: None.
        shift (bool): the block is an odd block of its stage (shifted windows). Default: False.
        pad_to_window (bool): detection/segmentation padding behaviour. Default: False.
        stage (int | None): stage index, for error messages. Default: None.
    """

    embed_dims: int
    num_heads: int = 1
    input_resolution: Optional[Tuple[int, int]] = None
    shift: bool = False
    pad_to_window: bool = False
    stage: Optional[int] = None

    @classmethod
    def keys(cls) -> Tuple[str, ...]:
        """The field names, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def as_dict(self) -> Dict[str, object]:
        """The fields as a dict."""
        return dataclasses.asdict(self)


class MixerNotProbeable(TypeError):
    """A mixer has no analysis hook (:meth:`SpatialMixer.aggregation`)."""


class SpatialMixer(nn.Module):
    """Base class of spatial mixers, (B, H, W, C) -> (B, H, W, C); see the module docstring.

    Subclasses implement ``forward`` and may override :meth:`aggregation` and
    :meth:`resize_entry`.
    """

    def aggregation(self, x: torch.Tensor) -> Tuple[torch.Tensor, Callable[[torch.Tensor],
                                                                          torch.Tensor]]:
        """Analysis hook (:mod:`mmdwnet.analysis.connectivity`): the spatial aggregation alone.

        Args:
            x (Tensor): one mixer input (1, H, W, C).

        Returns:
            tuple[Tensor, Callable]: the values (1, C, H, W) that enter the aggregation, and
            the aggregation (N, C, H, W) -> (N, C, H, W) with the connection weights that ``x``
            induces held fixed (detached), so that it is affine in the values.

        Raises:
            MixerNotProbeable: the mixer does not implement the hook.
        """
        raise MixerNotProbeable(
            f'{type(self).__name__} has no `aggregation(x)` analysis hook, so the connectivity '
            'analysis cannot probe it; implement `aggregation(x) -> (values, aggregate)` '
            '(see mmdwnet.models.mixers.SpatialMixer.aggregation and the built-in mixers)')

    def resize_entry(self, name: str, value: torch.Tensor, shape: torch.Size, mode: str = 'bicubic',
                     scale: str = 'none') -> torch.Tensor:
        """Resize one checkpoint entry of this mixer to this mixer's kernel/window size.

        Args:
            name (str): the parameter's name inside the mixer (e.g. ``'aggregate.weight'``).
            value (Tensor): the checkpoint's tensor (another kernel/window size).
            shape (torch.Size): this mixer's shape of the entry.
            mode (str): kernel interpolation, ``'bicubic'`` or ``'bilinear'``.
            scale (str): ``'none'`` or ``'sum'`` (keep kernel sums), see
                :func:`mmdwnet.models.layers.resize.resize_kernel`.

        Returns:
            Tensor: ``value`` resized to ``shape``.

        Raises:
            ResizeError: the entry cannot be resized.
        """
        raise ResizeError(f'no resizing rule for {type(self).__name__}.{name} of shape '
                          f'{tuple(value.shape)} -> {tuple(shape)}')

    def resize_state_dict(self, state_dict: Dict[str, torch.Tensor], prefix: str = '',
                          mode: str = 'bicubic', scale: str = 'none') -> List[str]:
        """Resize, in place, the entries ``prefix + name`` of ``state_dict`` that belong to this
        mixer and differ in shape from it (a checkpoint of another kernel/window size).

        Returns:
            list[str]: the keys that were resized.

        Raises:
            ResizeError: an entry cannot be resized (message names the key).
        """
        resized = []
        for name, target in self.state_dict().items():
            key = prefix + name
            if key not in state_dict or tuple(state_dict[key].shape) == tuple(target.shape):
                continue
            try:
                value = self.resize_entry(name, state_dict[key], target.shape, mode, scale)
            except ResizeError as e:
                raise ResizeError(f'{key}: {e}') from None
            if tuple(value.shape) != tuple(target.shape):
                raise ResizeError(f'{key}: resized to {tuple(value.shape)}, the model has '
                                  f'{tuple(target.shape)}')
            state_dict[key] = value
            resized.append(key)
        return resized
