"""The random state of a training process: saved into checkpoints, restored on resume, reseeded
per epoch, and the seeding of data-loading workers.

Everything random in a classification run draws from four generators: Python's ``random``,
NumPy's global generator (mmcv / mmpretrain transforms such as ``RandomCrop``, Mixup's lambda),
PyTorch's CPU generator (drop path, CutMix boxes, the seed of each data-loading worker) and
PyTorch's CUDA generators. :class:`~mmdwnet.engine.ExactResumeHook` and
:class:`~mmdwnet.engine.ResumableEpochBasedTrainLoop` use these helpers.

The states are stored as tensors, ints and floats only, so that checkpoints stay loadable with
``torch.load(weights_only=True)``.
"""
import random
from typing import Dict

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.registry import FUNCTIONS


def get_rng_state() -> Dict:
    """The states of ``random``, NumPy's global generator, torch CPU and (if initialised) CUDA."""
    version, py_state, gauss = random.getstate()
    name, key, pos, has_gauss, cached = np.random.get_state()
    state = dict(
        python=dict(version=version, state=torch.tensor(py_state, dtype=torch.int64),
                    gauss=gauss),
        numpy=dict(name=name, key=torch.from_numpy(key.astype(np.int64)), pos=int(pos),
                   has_gauss=int(has_gauss), cached=float(cached)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    py = state['python']
    random.setstate((py['version'], tuple(int(v) for v in py['state'].tolist()), py['gauss']))
    npy = state['numpy']
    np.random.set_state((npy['name'], npy['key'].cpu().numpy().astype(np.uint32), npy['pos'],
                         npy['has_gauss'], npy['cached']))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        cuda = state['cuda']
        if len(cuda) != torch.cuda.device_count():
            raise RuntimeError(f'the checkpoint holds the random state of {len(cuda)} CUDA '
                               f'devices, this process sees {torch.cuda.device_count()}; resume '
                               'with the same visible devices per process')
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def seed_everything(*entropy: int) -> None:
    """Seed ``random``, NumPy, torch (CPU and CUDA) from ``entropy`` (e.g. seed and epoch)."""
    py_seed, np_seed, torch_lo, torch_hi = np.random.SeedSequence(
        [int(e) for e in entropy]).generate_state(4)
    random.seed(int(py_seed))
    np.random.seed(int(np_seed))
    torch.manual_seed(int(torch_lo) | int(torch_hi) << 31)


@FUNCTIONS.register_module()
def epoch_seeded_worker_init_fn(worker_id: int) -> None:
    """Seed a data-loading worker from PyTorch's per-worker seed (and the rank).

    PyTorch seeds worker ``i``'s torch generator with ``base_seed + i``, ``base_seed`` being
    drawn from the main process's torch generator each time the data loader starts its workers
    (each epoch, unless ``persistent_workers``). Deriving ``random`` and NumPy from it makes a
    worker's augmentations differ between epochs (mmengine's default ``worker_init_fn`` seeds
    every epoch's workers alike) and depend only on the main process's state when the epoch
    starts, which :class:`~mmdwnet.engine.ExactResumeHook` reseeds from the seed and epoch --
    so a resumed run replays them exactly. Use it as
    ``train_dataloader = dict(worker_init_fn=dict(type='epoch_seeded_worker_init_fn'), ...)``.
    """
    seed_everything(torch.initial_seed(), get_rank(), worker_id)
