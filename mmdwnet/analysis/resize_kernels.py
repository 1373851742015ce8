"""Resize a checkpoint's kernels and relative position tables to a model of another kernel/window.

The logic of ``tools/analysis_tools/resize_kernels.py SRC DST --config TARGET_CONFIG
[--mode bicubic|bilinear] [--kernel-scale none|sum] [--force]`` (:func:`resize_checkpoint`).

Used for the paper's Table 14: a model trained at 224x224 with 7x7 kernels / windows is
fine-tuned at 384x384 with larger ones.  The target model is built from ``TARGET_CONFIG``; every
parameter whose shape differs from the source checkpoint is resized by what it is:

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
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmdwnet.utils.fileio import atomic_open, check_output
from mmdwnet.models.mixers.attention import (LocalMLP, ShiftedWindowAttention,
                                             SlidingWindowAttention)
from mmdwnet.models.mixers.dwconv import (DynamicDWConv2d, IDynamicDWConv2d,
                                          SharedDepthwiseConv2d)


class ResizeError(ValueError):
    """A checkpoint entry cannot be mapped onto the target model."""


def resize_kernel(weight, size, mode='bicubic', scale='none'):
    """Interpolate the trailing (k, k) grid of ``weight`` to (size, size).

    Args:
        weight (Tensor): (..., k, k).
        size (int): k'.
        mode (str): 'bicubic' or 'bilinear' (``align_corners=False``).
        scale (str): 'none' (default, plain interpolation as the paper / Swin) or 'sum', which
            multiplies by (k / k')^2 (keeps a kernel's sum).

    Returns:
        Tensor: (..., k', k').
    """
    k = weight.shape[-1]
    if weight.shape[-2] != k:
        raise ResizeError(f'expected square kernels, got {tuple(weight.shape)}')
    if k == size:
        return weight.clone()
    lead = weight.shape[:-2]
    out = F.interpolate(weight.reshape(-1, 1, k, k).float(), size=(size, size), mode=mode,
                        align_corners=False).to(weight.dtype)
    if scale == 'sum':
        out = out * (k / size)**2
    elif scale != 'none':
        raise ValueError(f"scale must be 'sum' or 'none', got {scale!r}")
    return out.reshape(*lead, size, size)


def resize_generator_rows(tensor, groups, size, mode='bicubic', scale='none'):
    """Resize the rows (dim 0, ordered ``(group, i, j)``) of a kernel generator's weight/bias.

    Args:
        tensor (Tensor): (groups * k * k, ...) -- ``expand.weight`` (G*k*k, C_in, 1, 1) or
            ``expand.bias`` (G*k*k,).
        groups (int): G (channels for D-DW, weight groups for I-D-DW).
        size (int): k'.

    Returns:
        Tensor: (groups * k' * k', ...).
    """
    rows, rest = tensor.shape[0], tensor.shape[1:]
    k = round((rows // groups)**0.5)
    if groups * k * k != rows:
        raise ResizeError(f'{rows} generator rows are not {groups} groups of k x k')
    grid = tensor.reshape(groups, k, k, -1).permute(0, 3, 1, 2)  # G, R, k, k
    grid = resize_kernel(grid, size, mode, scale)
    return grid.permute(0, 2, 3, 1).reshape(groups * size * size, *rest)


def resize_position_table(table, size, mode='bicubic'):
    """((2w-1)^2, heads) relative position table -> ((2w'-1)^2, heads) for window w'."""
    n, heads = table.shape
    side = round(n**0.5)
    if side * side != n:
        raise ResizeError(f'relative position table of {n} rows is not a square grid')
    grid = table.T.reshape(heads, side, side)
    grid = resize_kernel(grid, size, mode, scale='none')
    return grid.reshape(heads, size * size).T.contiguous()


def _resize_entry(module, name, src, dst_shape, mode, scale, parent=None):
    """Resized ``src`` for the parameter ``name`` of target ``module`` (shape ``dst_shape``);
    ``parent`` is the dynamic conv owning ``module`` when it is a kernel generator's conv."""
    if isinstance(module, (ShiftedWindowAttention, LocalMLP)) \
            and name == 'relative_position_bias_table':
        return resize_position_table(src, round(dst_shape[0]**0.5), 'bicubic')
    if isinstance(module, SlidingWindowAttention) and name == 'relative_position_bias_table':
        k = round(dst_shape[1]**0.5)
        side = round(src.shape[1]**0.5)
        return resize_kernel(src.reshape(-1, side, side), k, 'bicubic',
                             'none').reshape(dst_shape)
    if isinstance(module, nn.Conv2d) and name == 'weight' and module.groups > 1 \
            and src.shape[:2] == dst_shape[:2]:
        return resize_kernel(src, dst_shape[-1], mode, scale)
    if isinstance(module, SharedDepthwiseConv2d) and name == 'weight' and module.share_positions:
        return resize_kernel(src, dst_shape[-1], mode, scale)
    if isinstance(parent, (DynamicDWConv2d, IDynamicDWConv2d)) and name in ('weight', 'bias'):
        groups = parent.channels if isinstance(parent, DynamicDWConv2d) else parent.groups
        return resize_generator_rows(src, groups, parent.kernel_size, mode, scale)
    if isinstance(module, LocalMLP) and name == 'local_weight':
        raise ResizeError('LocalMLP.local_weight holds one weight matrix per window position '
                          'and cannot be resized to another window size')
    if isinstance(module, SharedDepthwiseConv2d):
        raise ResizeError('position-specific kernels (share_positions=False) cannot be resized')
    raise ResizeError(f'no resizing rule for a {type(module).__name__}.{name} of shape '
                      f'{tuple(src.shape)} -> {tuple(dst_shape)}')


def resize_state_dict(state_dict, model, mode='bicubic', scale='none'):
    """Map ``state_dict`` onto ``model``, resizing entries whose shapes differ.

    Returns:
        tuple[dict, list[str]]: the new state dict and the keys that were resized.

    Raises:
        ResizeError: keys missing on either side, or an entry without a resizing rule.
    """
    target = model.state_dict()
    generators = {id(mod.expand): mod for mod in model.modules()
                  if isinstance(mod, (DynamicDWConv2d, IDynamicDWConv2d))}
    missing = sorted(set(target) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(target))
    if missing or unexpected:
        raise ResizeError(f'the checkpoint does not match the target model: missing '
                          f'{missing[:8]}{" ..." if len(missing) > 8 else ""}, unexpected '
                          f'{unexpected[:8]}{" ..." if len(unexpected) > 8 else ""}. Is the '
                          'config the same architecture as the checkpoint?')
    out, resized = {}, []
    for key, value in state_dict.items():
        if tuple(value.shape) == tuple(target[key].shape):
            out[key] = value
            continue
        module_name, _, name = key.rpartition('.')
        module = model.get_submodule(module_name)
        try:
            out[key] = _resize_entry(module, name, value, target[key].shape, mode, scale,
                                     generators.get(id(module)))
        except ResizeError as e:
            raise ResizeError(f'{key}: {e}') from None
        if tuple(out[key].shape) != tuple(target[key].shape):
            raise ResizeError(f'{key}: resized to {tuple(out[key].shape)}, the target model has '
                              f'{tuple(target[key].shape)}')
        resized.append(key)
    return out, resized


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
