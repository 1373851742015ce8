"""End-to-end ImageNet classification runs on CPU with a synthetic ImageNet folder.

The configs are the real ``configs/classification/dwnet-tiny_8xb128_in1k.py`` (its pipeline,
schedule types, hooks, Mixup/CutMix, label smoothing) with a 16-channel backbone, 64-pixel crops,
3 classes and 2 epochs, written to ``tmp_path`` with :meth:`Config.dump`.
"""
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
LEAF = ROOT / 'configs' / 'classification' / 'dwnet-tiny_8xb128_in1k.py'
CLASSES = ['n01440764', 'n01443537', 'n01484850']
TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
TIMEOUT = 180

# Test-only hooks, imported by the runs through ``custom_imports`` (PYTHONPATH=tmp_path).
HOOKS = '''
import os
import signal

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class KillAfterFirstCheckpoint(Hook):
    """SIGKILL the run right after the first epoch's checkpoint is written."""
    priority = 'LOWEST'  # after CheckpointHook

    def after_train_epoch(self, runner):
        os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class DumpRankParameters(Hook):
    """Every rank saves its parameters to work_dir/rank<r>.pth at the end."""

    def after_run(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        torch.save({k: v.detach().clone() for k, v in model.named_parameters()},
                   os.path.join(runner.work_dir, f'rank{get_rank()}.pth'))
'''


def write_imagenet(root, classes=CLASSES, n_train=4, n_val=2, size=48):
    """ImageNet folder layout: root/{train,val}/<wnid>/<name>.JPEG (class-dependent colours)."""
    rng = np.random.default_rng(0)
    for split, n in (('train', n_train), ('val', n_val)):
        for c, wnid in enumerate(classes):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for j in range(n):
                colour = np.array([80 * c, 40, 160 - 80 * c])
                img = rng.integers(0, 60, (size, size + 8, 3)) + colour
                Image.fromarray(img.astype(np.uint8)).save(folder / f'{wnid}_{j}.JPEG', quality=90)
    return root


def make_config(path, data_root, epochs=2, val_interval=1, main_rng=True, hooks=()):
    """Dump the leaf config shrunk for CPU to ``path``.

    ``main_rng=False`` drops the randomness of the main process (drop path, Mixup/CutMix).
    """
    cfg = Config.fromfile(str(LEAF))
    cfg.model.backbone.arch = TINY
    cfg.model.backbone.drop_path_rate = 0.1 if main_rng else 0.
    cfg.model.head.update(in_channels=128, num_classes=len(CLASSES))
    if not main_rng:
        cfg.model.train_cfg = None
    cfg.data_preprocessor.num_classes = len(CLASSES)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        loader.update(batch_size=4, num_workers=1, persistent_workers=False, pin_memory=False)
        loader.dataset.update(data_root=str(data_root), metainfo=dict(classes=CLASSES))
    cfg.merge_from_dict({
        'train_dataloader.dataset.pipeline.1.scale': 64,  # RandomResizedCrop
        'val_dataloader.dataset.pipeline.1.scale': 73,  # ResizeEdge
        'val_dataloader.dataset.pipeline.2.crop_size': 64,  # CenterCrop
        'test_dataloader.dataset.pipeline.1.scale': 73,
        'test_dataloader.dataset.pipeline.2.crop_size': 64,
        'param_scheduler.0.end': 1,  # warm-up epochs
        'param_scheduler.1.begin': 1,
    })
    if epochs == 1:  # the cosine phase needs end > begin
        cfg.param_scheduler[1].end = 2
    cfg.val_evaluator.topk = (1, )  # 3 classes
    cfg.test_evaluator.topk = (1, )
    cfg.train_cfg.update(max_epochs=epochs, val_interval=val_interval)
    cfg.default_hooks.logger.interval = 1
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    cfg.randomness = dict(seed=0, deterministic=True)
    if hooks:
        cfg.custom_imports.imports.append('e2e_hooks')
        cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type=h) for h in hooks]
    cfg.dump(str(path))
    return str(path)


def run(cmd, tmp_path, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, **kwargs)


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def state(path):
    from mmdwnet.utils import safe_torch_load  # runner checkpoints need mmengine's allow-list
    return safe_torch_load(path, map_location='cpu')['state_dict']


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('cls_e2e')
    (tmp / 'e2e_hooks.py').write_text(HOOKS)
    return tmp, write_imagenet(tmp / 'imagenet')


@pytest.fixture(scope='module')
def reference_run(workspace):
    """An uninterrupted 2-epoch run started by ``mim train mmdwnet``."""
    tmp, data = workspace
    mim = Path(sys.executable).with_name('mim')
    if not mim.exists():
        pytest.skip(f'mim is not installed next to {sys.executable}')
    if not (ROOT / 'mmdwnet' / '.mim' / 'tools' / 'train.py').exists():
        pytest.skip('mmdwnet/.mim/tools is missing: run `pip install -e .` to create it')
    cfg = make_config(tmp / 'ref.py', data, val_interval=2)
    out = ok(run([mim, 'train', 'mmdwnet', cfg, '--work-dir', tmp / 'ref'], tmp))
    return cfg, tmp / 'ref', out


@pytest.mark.slow
def test_train_validate_checkpoint_then_test(workspace):
    tmp, data = workspace
    cfg = make_config(tmp / 'full.py', data)
    out = ok(run([sys.executable, 'tools/train.py', cfg, '--work-dir', tmp / 'full'], tmp))
    assert 'Epoch(val) [1]' in out and 'accuracy/top1' in out  # validated after epoch 1
    ckpt = tmp / 'full' / 'epoch_2.pth'
    assert ckpt.is_file() and (tmp / 'full' / 'epoch_1.pth').is_file()
    out = ok(run([sys.executable, 'tools/test.py', cfg, ckpt, '--work-dir', tmp / 'full_test'],
                 tmp))
    match = re.search(r'accuracy/top1: (\d+\.\d+)', out)
    assert match, out[-2000:]
    assert 0. <= float(match.group(1)) <= 100.


@pytest.mark.slow
def test_mim_train_finds_tools_and_configs(reference_run):
    _, work_dir, out = reference_run
    assert 'Training finished successfully' in out or (work_dir / 'epoch_2.pth').is_file(), out
    assert (work_dir / 'epoch_2.pth').is_file()
    assert 'accuracy/top1' in out  # validation at the last epoch


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted_run(workspace, reference_run):
    tmp, data = workspace
    _, ref_dir, _ = reference_run
    work = tmp / 'resumed'
    # drop path and Mixup/CutMix on: ExactResumeHook restores the main process's generators
    killed = make_config(tmp / 'killed.py', data, val_interval=2,
                         hooks=['KillAfterFirstCheckpoint'])
    proc = run([sys.executable, 'tools/train.py', killed, '--work-dir', work], tmp)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (work / 'epoch_1.pth').is_file() and not (work / 'epoch_2.pth').exists()

    full = make_config(tmp / 'resume.py', data, val_interval=2)
    out = ok(run([sys.executable, 'tools/train.py', full, '--work-dir', work, '--resume'], tmp))
    assert 'resumed epoch: 1' in out
    resumed, reference = state(work / 'epoch_2.pth'), state(ref_dir / 'epoch_2.pth')
    assert resumed.keys() == reference.keys()
    assert not all(torch.equal(v, state(work / 'epoch_1.pth')[k]) for k, v in resumed.items())
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key


@pytest.mark.slow
def test_two_process_torchrun_ranks_end_with_identical_weights(workspace):
    tmp, data = workspace
    cfg = make_config(tmp / 'dist.py', data, epochs=1, hooks=['DumpRankParameters'])
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    out = ok(run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', 2,
                  '--master_addr', '127.0.0.1', '--master_port', port, 'tools/train.py', cfg,
                  '--launcher', 'pytorch', '--work-dir', tmp / 'dist'], tmp))
    log = next((tmp / 'dist').glob('*/*.log')).read_text()
    assert 'Distributed launcher: pytorch' in log and 'Distributed training: True' in log, out
    rank0, rank1 = torch.load(tmp / 'dist' / 'rank0.pth'), torch.load(tmp / 'dist' / 'rank1.pth')
    assert rank0.keys() == rank1.keys() and len(rank0) > 50
    for key, value in rank0.items():
        assert torch.equal(value, rank1[key]), key
    saved = state(tmp / 'dist' / 'epoch_1.pth')
    assert all(torch.equal(saved[k], v) for k, v in rank0.items())


def test_missing_data_root_fails_with_the_path(workspace):
    from mmpretrain.registry import DATASETS

    import mmdwnet.datasets  # noqa: F401
    tmp, _ = workspace
    cfg = Config.fromfile(str(LEAF))
    dataset = dict(cfg.train_dataloader.dataset, data_root=str(tmp / 'no_such_imagenet'))
    with pytest.raises(FileNotFoundError) as err:
        DATASETS.build(dataset)
    msg = str(err.value)
    assert str(tmp / 'no_such_imagenet' / 'train') in msg
    assert '<data_root>/<split>/<class folder>/<image>.JPEG' in msg


def test_empty_class_folder_fails_with_the_folder(tmp_path):
    from mmpretrain.registry import DATASETS

    import mmdwnet.datasets  # noqa: F401
    root = write_imagenet(tmp_path / 'imagenet', n_val=1)
    (root / 'train' / 'n09999999').mkdir()
    (root / 'train' / 'n09999999' / 'notes.txt').write_text('not an image')
    cfg = Config.fromfile(str(LEAF))
    dataset = dict(cfg.train_dataloader.dataset, data_root=str(root),
                   metainfo=dict(classes=CLASSES + ['n09999999']))
    with pytest.raises(FileNotFoundError) as err:
        DATASETS.build(dataset)
    msg = str(err.value)
    assert str(root / 'train' / 'n09999999') in msg and 'contain no image' in msg
    # the ImageNet class list (1000) does not match 3 folders: say so
    dataset = dict(cfg.val_dataloader.dataset, data_root=str(root))
    with pytest.raises(FileNotFoundError, match=r'has 3 class folders but the dataset expects '
                       r'1000 classes'):
        DATASETS.build(dataset)
    # the real layout builds: 3 classes x 1 image
    dataset = dict(cfg.val_dataloader.dataset, data_root=str(root),
                   metainfo=dict(classes=CLASSES))
    built = DATASETS.build(dataset)
    assert len(built) == 3 and built.get_data_info(2)['gt_label'] == 2
