"""Window helpers shared by the window-based mixers (shifted-window attention, local MLP)."""
from typing import Optional

import torch
import torch.nn.functional as F


def relative_position_index(window_size: int) -> torch.Tensor:
    """(w*w, w*w) index into a ((2w-1)^2)-row relative position table (official Swin order)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size),
                                        indexing='ij')).flatten(1)  # 2, w*w
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return rel[..., 0] * (2 * window_size - 1) + rel[..., 1]


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, w*w, C); H and W must be multiples of w."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """(B * nW, w*w, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window_size, w // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, window_size: int, shift: int,
                        device: Optional[torch.device] = None) -> torch.Tensor:
    """(nW, w*w, w*w) bool mask, True where two tokens of a shifted window may not interact."""
    img = torch.zeros(1, h, w, 1, device=device)
    region = 0
    spans = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    for hs in spans:
        for ws in spans:
            img[:, hs, ws, :] = region
            region += 1
    ids = window_partition(img, window_size).squeeze(-1)  # nW, w*w
    return ids[:, None, :] != ids[:, :, None]


class WindowGeometry:
    """How a (H, W) map is windowed: effective shift and bottom/right padding.

    Official classification Swin (``pad_to_window=False``) does not shift when the map is no
    larger than a window and cannot take maps smaller than a window; the detection/segmentation
    code (``pad_to_window=True``) pads small maps and always keeps the shift.
    """

    def __init__(self, h: int, w: int, window_size: int, shift: int, pad_to_window: bool,
                 stage: Optional[int] = None) -> None:
        if min(h, w) < window_size and not pad_to_window:
            where = f' in stage {stage}' if stage is not None else ''
            raise ValueError(f'feature map {h}x{w}{where} is smaller than the window '
                             f'({window_size}); use a larger input or pad_to_window=True '
                             '(detection/segmentation behaviour)')
        if min(h, w) <= window_size and not pad_to_window:
            shift = 0
        self.h, self.w, self.window_size, self.shift = h, w, window_size, shift
        self.pad_b = (window_size - h % window_size) % window_size
        self.pad_r = (window_size - w % window_size) % window_size
        self.hp, self.wp = h + self.pad_b, w + self.pad_r

    @property
    def num_windows(self) -> int:
        return (self.hp // self.window_size) * (self.wp // self.window_size)

    def partition(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B * nW, w*w, C), padded and cyclically shifted."""
        x = F.pad(x, (0, 0, 0, self.pad_r, 0, self.pad_b))
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        return window_partition(x, self.window_size)

    def reverse(self, windows: torch.Tensor) -> torch.Tensor:
        """(B * nW, w*w, C) -> (B, H, W, C), shifted back and cropped."""
        x = window_reverse(windows, self.window_size, self.hp, self.wp)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x[:, :self.h, :self.w, :]

    def mask(self, device: Optional[torch.device] = None) -> Optional[torch.Tensor]:
        """(nW, w*w, w*w) bool mask or None when not shifted."""
        if not self.shift:
            return None
        return shifted_window_mask(self.hp, self.wp, self.window_size, self.shift, device)
