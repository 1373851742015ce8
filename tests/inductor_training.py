"""Train a model eagerly and with ``torch.compile(dynamic=True)`` (inductor, the default backend)
side by side, in a fresh process; print one JSON line with the losses and the largest
parameter difference. Used by ``tests/engine/test_compile.py``.

    python tests/inductor_training.py {all-ops | PRESET} --sizes 32 48

``all-ops``: a conv stem and one block of every mixer built on convolutions or the mmdwnet ops
(DWConv, DynamicDWConv, IDynamicDWConv, SlidingWindowAttention) on (B, H, W, C) tokens: the
layouts every preset saves for backward, in one small graph. ``PRESET``: a backbone preset at
a tiny arch. The C++ kernels are built without optimisation (``TORCHINDUCTOR_DEBUG_COMPILE=1``,
set by the caller): this checks that the compiled training is right, not how fast it is.
:func:`build` also makes the models of the other tests in ``tests/engine/test_compile.py``.
"""
import argparse
import json

import torch
import torch.nn as nn

import mmdwnet  # noqa: F401
from mmdwnet.models.mixers import DWConv, DynamicDWConv, IDynamicDWConv, SlidingWindowAttention
from mmdwnet.registry import MODELS
from mmdwnet.utils import inductor_compat

TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
MIXER = dict(SwinNet=dict(window_size=1), LocalMLPNet=dict(window_size=1))
FIXED_SIZE = ('LocalMLPNet', )  # per-window weights: built for one input size


class AllOps(nn.Module):
    """(B, 3, H, W) -> (B, H/4, W/4, 16): a stem, then x + mixer(x) for each mixer."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, 4)
        self.mixers = nn.ModuleList([
            DWConv(16, 7), DynamicDWConv(16, 7), IDynamicDWConv(16, 7, group_channels=4),
            SlidingWindowAttention(16, 2, 7)])

    def forward(self, x):
        x = self.stem(x).permute(0, 2, 3, 1)
        for mixer in self.mixers:
            x = x + mixer(x)
        return x


def build(name, size):
    torch.manual_seed(0)
    if name == 'all-ops':
        return AllOps().train()
    return MODELS.build(dict(type=name, arch=TINY, img_size=size if name in FIXED_SIZE else 32,
                             drop_path_rate=0., mixer=MIXER.get(name))).train()


def loss_of(out):
    outs = out if isinstance(out, (tuple, list)) else (out, )
    return sum(o.square().mean() for o in outs)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('model')
    parser.add_argument('--sizes', type=int, nargs='+', default=[32, 48])
    args = parser.parse_args(argv)
    eager, compiled = build(args.model, args.sizes[0]), build(args.model, args.sizes[0])
    inductor_compat.install()  # explicit: import mmdwnet leaves torch alone
    step = torch.compile(compiled, dynamic=True)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (eager, compiled)]
    losses = []
    for size in args.sizes:
        x = torch.randn(2, 3, size, size)
        pair = []
        for model, opt in zip((eager, step), opts):
            loss = loss_of(model(x))
            opt.zero_grad()
            loss.backward()
            opt.step()
            pair.append(loss.item())
        losses.append(pair)
    diff = max((a - b).abs().max().item()
               for a, b in zip(eager.parameters(), compiled.parameters()))
    print(json.dumps(dict(losses=losses, param_diff=diff,
                          stride_fallbacks=inductor_compat.fallbacks())))


if __name__ == '__main__':
    main()
