"""Resize a checkpoint's kernels and relative position tables to a model of another kernel/window.

The logic of ``tools/analysis_tools/resize_kernels.py SRC DST --config TARGET_CONFIG
[--mode bicubic|bilinear] [--kernel-scale none|sum] [--force]`` (:func:`resize_checkpoint`).

Used for the paper's Table 14: a model trained at 224x224 with 7x7 kernels / windows is
fine-tuned at 384x384 with larger ones.  The target model is built from ``TARGET_CONFIG``; every
parameter whose shape differs from the source checkpoint is resized by the hook of the mixer
that owns it (:meth:`mmdwnet.models.mixers.SpatialMixer.resize_entry`, with the interpolation of
:mod:`mmdwnet.models.layers.resize`), or, outside the mixers, as a grouped conv's kernel
(a block's ``ffn_dwconv``):

* depth-wise conv kernels (C, 1, k, k) and shared kernels (G, 1, k, k): interpolated on the k x k
  grid to k' x k';
* kernel generators of the dynamic convs -- the last 1x1 conv (``expand``) of D-DW (output rows
  ``c * k*k + i * k + j``) and of I-D-DW (rows ``g * k*k + i * k + j``): its weight rows and bias
  are regrouped into k x k grids and interpolated, so the generated kernels are the interpolated
  kernels (the generator is linear in these rows);
* relative position tables: Swin / Local MLP ((2w-1)^2, heads) bicubic on the (2w-1) x (2w-1)
  grid (as the official Swin code), sliding-window attention (heads, k*k) on the k x k grid.

By default kernels are upsampled with plain bicubic interpolation and no rescaling, as the paper
does for its 12x12 kernels ("as done in Swin", Table 14); even target sizes (12) are fine.
``--kernel-scale sum`` instead scales them by (k / k')^2, which keeps each kernel's sum -- the
response to a constant input -- and thus the scale of the BN that follows; position tables
(logit biases) are never scaled.  Position-specific weights (``share_positions=False``
layers, Local MLP's per-window ``local_weight``) cannot be resized and raise an error.

The output holds ``state_dict`` and ``meta`` only; use it as ``load_from`` of the target config.
It never replaces the source (also through a link), replaces an existing file only with
``force``, is checked before the work starts and is written atomically.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from mmdwnet.models.layers.resize import (ResizeError, resize_generator_rows, resize_kernel,
                                          resize_position_table)
from mmdwnet.models.mixers import SpatialMixer
from mmdwnet.utils.fileio import atomic_open, check_output

__all__ = ['ResizeError', 'resize_kernel', 'resize_generator_rows', 'resize_position_table',
           'resize_state_dict', 'resize_checkpoint']


def _hook_owner(model: nn.Module, key: str) -> Tuple[str, Optional[nn.Module]]:
    """The outermost module above ``key`` (a parameter not inside a :class:`SpatialMixer`)
    with a ``resize_entry`` hook -- a bare aggregation such as
    :class:`~mmdwnet.models.mixers.dwconv.DynamicDWAggregate` as the whole model -- and its
    prefix; ``('', None)`` when there is none."""
    parts = key.split('.')[:-1]
    module = model
    for i in range(len(parts) + 1):
        if callable(getattr(module, 'resize_entry', None)):
            return ''.join(p + '.' for p in parts[:i]), module
        if i < len(parts):
            module = getattr(module, parts[i])
    return '', None


def _resize_outside_mixers(model: nn.Module, key: str, value: torch.Tensor, shape: torch.Size,
                           mode: str, scale: str) -> torch.Tensor:
    """Resize an entry that no :class:`SpatialMixer` owns: a grouped (depth-wise) conv's
    kernel, such as a block's ``ffn_dwconv.conv`` (Table 6), or an entry of a module with its
    own ``resize_entry`` hook."""
    module_name, _, name = key.rpartition('.')
    module = model.get_submodule(module_name)
    if isinstance(module, nn.Conv2d) and name == 'weight' and module.groups > 1 \
            and tuple(value.shape[:2]) == tuple(shape[:2]):
        return resize_kernel(value, shape[-1], mode, scale)
    prefix, owner = _hook_owner(model, key)
    if owner is not None:
        return owner.resize_entry(key[len(prefix):], value, shape, mode, scale)
    raise ResizeError(f'no resizing rule for a {type(module).__name__}.{name} of shape '
                      f'{tuple(value.shape)} -> {tuple(shape)}')


def resize_state_dict(state_dict: Dict[str, torch.Tensor], model: nn.Module,
                      mode: str = 'bicubic',
                      scale: str = 'none') -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Map ``state_dict`` onto ``model``, resizing entries whose shapes differ.

    Every :class:`~mmdwnet.models.mixers.SpatialMixer` of ``model`` resizes its own entries
    (:meth:`~mmdwnet.models.mixers.SpatialMixer.resize_state_dict`); an entry outside the
    mixers is resized if it is a grouped conv's kernel (``ffn_dwconv.conv``) or belongs to a
    module with a ``resize_entry`` hook; anything else raises.

    Args:
        state_dict (dict[str, Tensor]): the source weights (another kernel/window size).
        model (nn.Module): the target model.
        mode (str): kernel interpolation, ``'bicubic'`` or ``'bilinear'`` (position tables
            are always bicubic).
        scale (str): ``'none'`` or ``'sum'`` (keep kernel sums).

    Returns:
        tuple[dict, list[str]]: the new state dict and the keys that were resized (in the
        order of ``state_dict``).

    Raises:
        ResizeError: keys missing on either side, or an entry without a resizing rule.
    """
    target = model.state_dict()
    missing = sorted(set(target) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(target))
    if missing or unexpected:
        raise ResizeError(f'the checkpoint does not match the target model: missing '
                          f'{missing[:8]}{" ..." if len(missing) > 8 else ""}, unexpected '
                          f'{unexpected[:8]}{" ..." if len(unexpected) > 8 else ""}. Is the '
                          'config the same architecture as the checkpoint?')
    out = dict(state_dict)
    resized = set()
    for name, module in model.named_modules():
        if isinstance(module, SpatialMixer):
            resized.update(module.resize_state_dict(out, f'{name}.' if name else '', mode, scale))
    for key, value in state_dict.items():
        if key in resized or tuple(value.shape) == tuple(target[key].shape):
            continue
        try:
            out[key] = _resize_outside_mixers(model, key, value, target[key].shape, mode, scale)
        except ResizeError as e:
            raise ResizeError(f'{key}: {e}') from None
        if tuple(out[key].shape) != tuple(target[key].shape):
            raise ResizeError(f'{key}: resized to {tuple(out[key].shape)}, the target model has '
                              f'{tuple(target[key].shape)}')
        resized.add(key)
    return out, [key for key in state_dict if key in resized]


def load_state_dict(path):
    from mmdwnet.utils.torch_load import safe_torch_load
    ckpt = safe_torch_load(path, map_location='cpu')  # weights_only=True, explicitly
    if isinstance(ckpt, dict) and 'state_dict' in ckpt:
        return ckpt['state_dict'], ckpt.get('meta', {})
    if isinstance(ckpt, dict) and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt, {}
    raise ResizeError(f'{path} is not an mmengine checkpoint or a state dict; convert official '
                      'checkpoints first with tools/model_converters/official2mmdwnet.py')


def resize_checkpoint(src: str, dst: str, config: str, mode: str = 'bicubic',
                      scale: str = 'none', force: bool = False) -> List[str]:
    """Write ``src`` resized for the model of ``config`` to ``dst``; return the resized keys.

    ``dst`` is checked first (:func:`mmdwnet.utils.fileio.check_output`): the source itself
    (also through a symlink or a hard link) is refused, an existing file is replaced only with
    ``force``, an unwritable folder is reported before the work; the file is written to a
    temporary file next to it and renamed into place.

    Raises:
        ResizeError: the checkpoint does not fit the target model.
        FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError: see
            :func:`~mmdwnet.utils.fileio.check_output`.
    """
    from mmdwnet.apis import init_model
    check_output(dst, force=force, inputs=[src], label='DST')
    state_dict, meta = load_state_dict(src)
    model = init_model(config)
    new_state, resized = resize_state_dict(state_dict, model, mode, scale)
    meta = dict(meta, resized_from=src, resized_for=config, resized_keys=resized)
    check_output(dst, force=force, inputs=[src], label='DST')  # the source may have moved
    with atomic_open(dst, 'wb', replace=force) as f:  # never a truncated file, never a surprise
        torch.save(dict(state_dict=new_state, meta=meta), f)
    return resized
