"""Distributed runs without GPUs (gloo): the one workaround for mmengine's CUDA-only launch.

Why: mmengine 0.10.7's ``init_dist`` (``mmengine/dist/utils.py``, ``_init_dist_pytorch`` and
``_init_dist_slurm``) calls ``torch.cuda.set_device(local_rank)`` unconditionally, and
``Runner.wrap_model`` gives ``MMDistributedDataParallel`` ``device_ids=[LOCAL_RANK]``; both fail
on a machine without CUDA (see open-mmlab/mmengine#973 for where the two are set). mmengine has
no CPU code path for them, so :func:`cpu_ddp` -- applied by ``tools/train.py`` and
``tools/test.py`` around building the runner, and only for a distributed launcher on a machine
without CUDA -- makes ``torch.cuda.set_device`` a no-op while the runner is built (``init_dist``
runs then) and restores it afterwards, and sets ``model_wrapper_cfg.device_ids=None`` (DDP on
CPU). ``tests/tasks/test_classification_e2e.py`` runs a 2-process CPU training with it.
"""
import contextlib

import torch


def _no_cuda_device(device):
    """``torch.cuda.set_device`` on a machine without CUDA: nothing to select."""


def needs_cpu_ddp(cfg) -> bool:
    """Whether ``cfg`` asks for a distributed launcher on a machine without CUDA."""
    return cfg.get('launcher', 'none') != 'none' and not torch.cuda.is_available()


@contextlib.contextmanager
def cpu_ddp(cfg):
    """Inside: ``cfg`` (a distributed launch on a machine without CUDA) builds a CPU DDP runner.

    Sets ``cfg.model_wrapper_cfg.device_ids = None`` and makes ``torch.cuda.set_device`` a
    no-op until the block ends. Does nothing when :func:`needs_cpu_ddp` is False.
    """
    if not needs_cpu_ddp(cfg):
        yield cfg
        return
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper
    original = torch.cuda.set_device
    torch.cuda.set_device = _no_cuda_device
    try:
        yield cfg
    finally:
        torch.cuda.set_device = original
