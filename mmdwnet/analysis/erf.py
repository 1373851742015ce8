"""Effective receptive field (ERF) of a backbone stage.

The ERF of stage ``i`` (Luo et al., 2016; plotted as in RepLKNet, Ding et al., 2022) is the
mean over images of ``|d y_c / d x|`` summed over the image channels, where ``y_c`` is the
centre position of the stage's output summed over its channels and ``x`` the input image::

    erf[h, w] = mean_images sum_rgb | d (sum_c out_i[c, H_i // 2, W_i // 2]) / d x[rgb, h, w] |

The stage output is taken with a forward hook on ``backbone.stages[i]`` (mmdwnet's
:class:`LocalMixerNet` and its presets return (B, H, W, C) there; mmpretrain-style stages
(B, C, H, W) or ``(tokens, hw_shape)``) and the forward pass stops right after it.
"""
import sys
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

__all__ = ['find_backbone', 'load_images', 'stage_output', 'effective_receptive_field',
           'high_contribution_area', 'plot_erf', 'SKIMAGE_IMAGES']

# skimage.data RGB images that ship with scikit-image (no download).
SKIMAGE_IMAGES = ('astronaut', 'chelsea', 'coffee', 'rocket', 'immunohistochemistry',
                  'colorwheel', 'hubble_deep_field', 'cat')
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class _StopForward(Exception):
    pass


def find_backbone(model: nn.Module) -> nn.Module:
    """The backbone of a classifier / detector / segmentor (``model.backbone``) or ``model``."""
    return getattr(model, 'backbone', model)


def _stages(backbone):
    for name in ('stages', 'res_layers', 'layers'):
        stages = getattr(backbone, name, None)
        if stages is None:
            continue
        if isinstance(stages, torch.nn.ModuleList):
            return stages
        if isinstance(stages, (list, tuple)) and all(isinstance(s, str) for s in stages):
            return torch.nn.ModuleList([getattr(backbone, s) for s in stages])
    raise TypeError(f'{type(backbone).__name__} has no `stages` (or `res_layers`) module list; '
                    'the ERF tool hooks the output of one stage of such a backbone')


def _channels_last(backbone):
    from mmdwnet.models.backbones import LocalMixerNet
    return isinstance(backbone, LocalMixerNet)


def stage_output(backbone: nn.Module, images: torch.Tensor, stage: int) -> torch.Tensor:
    """Output of ``backbone.stages[stage]`` for ``images`` as (B, C, H, W), keeping the graph.

    Raises:
        IndexError: ``stage`` is not a stage of the backbone.
    """
    stages = _stages(backbone)
    if not -len(stages) <= stage < len(stages):
        raise IndexError(f'stage {stage} out of range: {type(backbone).__name__} has '
                         f'{len(stages)} stages (0..{len(stages) - 1})')
    captured = {}

    def hook(module, args, output):
        captured['out'] = output
        raise _StopForward

    handle = stages[stage].register_forward_hook(hook)
    try:
        backbone(images)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if 'out' not in captured:
        raise RuntimeError(f'stage {stage} of {type(backbone).__name__} did not run')
    out = captured['out']
    if isinstance(out, (tuple, list)):
        if len(out) >= 2 and isinstance(out[1], (tuple, list, torch.Size)) and out[0].dim() == 3:
            h, w = out[1]  # (B, L, C) tokens with their (H, W)
            return out[0].transpose(1, 2).reshape(out[0].shape[0], -1, h, w)
        out = out[0]
    if out.dim() != 4:
        raise ValueError(f'stage {stage} returned a {out.dim()}-d tensor; expected a feature map')
    return out.permute(0, 3, 1, 2) if _channels_last(backbone) else out


def load_images(source: str = 'skimage', num_images: int = 4,
                size: Tuple[int, int] = (224, 224), seed: int = 0) -> torch.Tensor:
    """A (N, 3, H, W) float batch normalised with the ImageNet mean/std.

    Args:
        source (str): ``'skimage'`` (scikit-image's bundled photos, resized), ``'random'``
            (standard normal noise) or a folder of image files.
        num_images (int): how many (skimage and folders: at most that many).
        size (tuple[int, int]): (H, W).
    """
    h, w = size
    if num_images < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images}')
    if source == 'random':
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(num_images, 3, h, w, generator=gen)
    if source == 'skimage':
        import skimage.data
        arrays = [getattr(skimage.data, name)() for name in SKIMAGE_IMAGES[:num_images]]
    else:
        from pathlib import Path

        import mmcv
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"image source {source!r} is neither 'skimage', 'random' "
                                    'nor an existing folder of images')
        files = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in ('.jpg', '.jpeg', '.png', '.bmp'))[:num_images]
        if not files:
            raise FileNotFoundError(f'no .jpg/.jpeg/.png/.bmp images in {folder}')
        arrays = [mmcv.imread(str(p), channel_order='rgb') for p in files]
    import mmcv
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    batch = []
    for arr in arrays:
        arr = mmcv.imresize(np.ascontiguousarray(arr[..., :3]), (w, h)).astype(np.float64)
        batch.append(torch.from_numpy(((arr - mean) / std).transpose(2, 0, 1)).float())
    return torch.stack(batch)


def effective_receptive_field(model: nn.Module, images: torch.Tensor, stage: int,
                              progress: bool = True) -> np.ndarray:
    """Mean |gradient| of the centre output of ``stage`` w.r.t. the input, summed over RGB.

    Args:
        model (nn.Module): a backbone or a model with ``.backbone`` (eval mode expected).
        images (Tensor): (N, 3, H, W) normalised images.
        stage (int): stage index.
        progress (bool): mmengine ProgressBar over the images.

    Returns:
        np.ndarray: (H, W) float64 ERF.
    """
    backbone = find_backbone(model)
    total = torch.zeros(images.shape[-2:], dtype=torch.float64)
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(len(images), file=sys.stdout)
    for img in images:
        x = img[None].clone().requires_grad_(True)
        out = stage_output(backbone, x, stage)
        h, w = out.shape[-2:]
        out[0, :, h // 2, w // 2].sum().backward()
        total += x.grad[0].abs().sum(0).double()
        if bar is not None:
            bar.update()
    if bar is not None:
        print()
    return (total / len(images)).numpy()


def high_contribution_area(erf: np.ndarray, thresholds: Sequence[float] = (0.2, 0.3, 0.5, 0.99)
                           ) -> Dict[float, float]:
    """RepLKNet's metric: smallest centred square holding ``t`` of the (log-scaled) ERF mass,
    as a fraction of the image area, for each threshold ``t``."""
    data = np.log10(erf + 1)
    data = data / max(data.sum(), 1e-12)
    h, w = data.shape
    ch, cw = h // 2, w // 2
    result = {}
    for t in thresholds:
        for r in range(0, max(h, w)):
            area = data[max(ch - r, 0):ch + r + 1, max(cw - r, 0):cw + r + 1]
            if area.sum() >= t:
                result[t] = area.size / (h * w)
                break
        else:
            result[t] = 1.0
    return result


def plot_erf(erf: np.ndarray, path: str, title: Optional[str] = None) -> None:
    """Save a heat map of ``log10(erf + 1)`` scaled to [0, 1] to ``path``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    data = np.log10(erf + 1)
    data = data / max(data.max(), 1e-12)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    im = ax.imshow(data, cmap='RdYlGn', vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)
