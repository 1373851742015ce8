"""Resizing kernels, kernel generators and relative position tables to another k / window.

The interpolation behind the mixers' resize hook (:meth:`mmdwnet.models.mixers.SpatialMixer.
resize_entry`), used for the paper's Table 14: a model trained with 7x7 kernels / windows is
fine-tuned at 384 px with larger ones.  Kernels are upsampled with plain bicubic interpolation
and no rescaling by default, as the paper ("as done in Swin"); ``scale='sum'`` keeps each
kernel's sum instead.
"""
import torch
import torch.nn.functional as F

__all__ = ['ResizeError', 'resize_kernel', 'resize_generator_rows', 'resize_position_table']


class ResizeError(ValueError):
    """A checkpoint entry cannot be mapped onto the target model."""


def resize_kernel(weight: torch.Tensor, size: int, mode: str = 'bicubic',
                  scale: str = 'none') -> torch.Tensor:
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
    if scale not in ('sum', 'none'):
        raise ValueError(f"scale must be 'sum' or 'none', got {scale!r}")
    if k == size:
        return weight.clone()
    lead = weight.shape[:-2]
    out = F.interpolate(weight.reshape(-1, 1, k, k).float(), size=(size, size), mode=mode,
                        align_corners=False).to(weight.dtype)
    if scale == 'sum':
        out = out * (k / size)**2
    return out.reshape(*lead, size, size)


def resize_generator_rows(tensor: torch.Tensor, groups: int, size: int, mode: str = 'bicubic',
                          scale: str = 'none') -> torch.Tensor:
    """Resize the rows (dim 0, ordered ``(group, i, j)``) of a kernel generator's weight/bias.

    The generated kernels are linear in these rows, so they become the interpolated kernels.

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


def resize_position_table(table: torch.Tensor, size: int, mode: str = 'bicubic') -> torch.Tensor:
    """((2w-1)^2, heads) relative position table -> (size^2, heads) (size = 2w'-1), on the
    (2w-1) x (2w-1) grid as the official Swin code; tables are never rescaled."""
    n, heads = table.shape
    side = round(n**0.5)
    if side * side != n:
        raise ResizeError(f'relative position table of {n} rows is not a square grid')
    grid = table.T.reshape(heads, side, side)
    grid = resize_kernel(grid, size, mode, scale='none')
    return grid.reshape(heads, size * size).T.contiguous()
