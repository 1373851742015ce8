"""Issue #31.5: a ``tools/train.py`` run killed (``SIGKILL``) in the middle of an epoch and
resumed with ``--resume`` ends with the weights of the uninterrupted run, bit for bit.

The run is the real digits config (``RandomCrop`` in the pipeline, drawing from NumPy's generator
in its data-loading worker) with drop path 0.1 (torch's generator in the main process) on 160
digits, 16 per batch: 10 iterations per epoch, 3 epochs, a checkpoint every 7 iterations. One
worker: it exercises both the workers' seeding and the main process's saved random state (with
0 workers the crops draw from the main process's state, restored the same way; the test passes
with ``WORKERS = 0`` too, at the same cost). The killed run stops itself
with ``SIGKILL`` after iteration 17, so its last checkpoint is ``iter_14.pth``: 4 iterations into
the second epoch, 3 trained iterations lost. Without ExactResumeHook and
ResumableEpochBasedTrainLoop the resumed weights differ from the uninterrupted ones (mmengine
trains the second epoch again from its start, with other random crops).
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / 'configs' / 'classification' / 'digits' / 'dwnet-nano_1xb64-10e_digits-32px.py'
KILL_AT = 17
CHECKPOINT_EVERY = 7
ITERS = 30
WORKERS = 1

KILL_HOOK = '''
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillAtIteration(Hook):
    """SIGKILL this process at the end of iteration ``at`` (after the checkpoint hooks)."""
    priority = 'LOWEST'

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def write_digits(root, per_class=16):
    """root/train/<digit>/<i>.png: ``per_class`` 32x32 scikit-learn digits per class."""
    from PIL import Image
    from sklearn.datasets import load_digits
    digits = load_digits()
    for d in range(10):
        folder = root / 'train' / str(d)
        folder.mkdir(parents=True)
        for i, sample in enumerate(digits.images[digits.target == d][:per_class]):
            img = Image.fromarray((sample * (255 / 16)).round().astype(np.uint8))
            img.resize((32, 32), Image.BICUBIC).save(folder / f'{i}.png')
    return root


def make_config(path, data_root, workers, kill_at=None):
    cfg = Config.fromfile(str(DIGITS))
    cfg.model.backbone.drop_path_rate = 0.1
    loader = cfg.train_dataloader
    loader.update(batch_size=16, num_workers=workers, persistent_workers=False)
    loader.dataset.data_root = str(data_root)
    cfg.train_cfg.update(max_epochs=3)
    cfg.default_hooks.checkpoint.update(by_epoch=False, interval=CHECKPOINT_EVERY,
                                        max_keep_ckpts=-1)
    cfg.default_hooks.logger.interval = 1
    if kill_at is not None:
        cfg.custom_imports.imports.append('kill_hook')
        cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type='KillAtIteration', at=kill_at)]
    cfg.dump(str(path))
    return path


def train(tmp, cfg, work_dir, *extra):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(tmp), str(ROOT)]))
    return subprocess.run([sys.executable, 'tools/train.py', str(cfg), '--work-dir',
                           str(work_dir), '--no-validate', *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def weights(path):
    from mmdwnet.utils.torch_load import safe_torch_load  # runner checkpoints hold mmengine types
    return safe_torch_load(path, map_location='cpu')['state_dict']


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('resume_exact')
    (tmp / 'kill_hook.py').write_text(KILL_HOOK)
    return tmp, write_digits(tmp / 'digits')


@pytest.mark.slow
def test_killed_mid_epoch_and_resumed_equals_uninterrupted(data, workers=WORKERS):
    tmp, root = data
    cfg = make_config(tmp / f'digits_w{workers}.py', root, workers)
    ref_dir, work = tmp / f'ref_w{workers}', tmp / f'killed_w{workers}'
    proc = train(tmp, cfg, ref_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]

    killed = make_config(tmp / f'killed_w{workers}.py', root, workers, kill_at=KILL_AT)
    proc = train(tmp, killed, work)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert (work / 'iter_14.pth').is_file() and not (work / 'iter_21.pth').exists()
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_14.pth')

    proc = train(tmp, cfg, work, '--resume')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert 'resuming in epoch 2 after its iteration 4' in out, out[-3000:]
    resumed, reference = weights(work / f'iter_{ITERS}.pth'), weights(ref_dir / f'iter_{ITERS}.pth')
    assert resumed.keys() == reference.keys() and len(reference) > 100
    at_checkpoint = weights(work / 'iter_14.pth')
    assert not all(torch.equal(v, at_checkpoint[k]) for k, v in resumed.items())
    different = [k for k, v in reference.items() if not torch.equal(resumed[k], v)]
    assert not different, f'{len(different)} of {len(reference)} tensors differ: {different[:5]}'
