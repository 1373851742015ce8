"""Issue 2: mmengine checkpoints load with torch's weights-only loader; resume round trip."""
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmdwnet.registry import MODELS


class _Data(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(3, 32, 32, generator=g), label=i % 2)


class _Classifier(BaseModel):
    """A DWNet backbone + linear head: enough of a model for a real Runner."""

    def __init__(self):
        super().__init__()
        self.backbone = MODELS.build(dict(type='DWNet', arch=dict(
            embed_dims=8, depths=[1, 1, 1, 1], num_heads=1), drop_path_rate=0.))
        self.head = nn.Linear(64, 2)

    def forward(self, inputs, label=None, mode='loss'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        logits = self.head(self.backbone(x)[-1].mean((2, 3)))
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(logits, torch.as_tensor(label)))
        return logits


def _runner(work_dir, max_iters, resume):
    return Runner(
        model=_Classifier(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=_Data(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        param_scheduler=dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=4),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0), resume=resume, default_scope='mmpretrain',
        custom_hooks=[dict(type='SafeLoadingHook')],  # resume reads through mmdwnet's gate
        # MessageHub instances are keyed by experiment name (a timestamp by default)
        experiment_name=f'{work_dir}-{max_iters}-{resume}'.replace('/', '_'))


def test_mmengine_checkpoint_needs_the_allow_list(tmp_path):
    """The test can fail: without mmdwnet's allow-list torch >= 2.6 refuses the checkpoint."""
    runner = _runner(tmp_path, 2, False)
    runner.train()
    ckpt = tmp_path / 'iter_2.pth'
    code = f"import torch; torch.load({str(ckpt)!r})"
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode != 0 and 'Weights only load failed' in proc.stderr
    gated = ('from mmdwnet.utils import safe_loading\nwith safe_loading():\n    '
             f'torch.load({str(ckpt)!r}, weights_only=False)')  # the gate forces weights_only
    proc = subprocess.run([sys.executable, '-c', 'import torch\n' + gated],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-1500:]
    from mmdwnet.utils import safe_loading
    with safe_loading():
        loaded = torch.load(ckpt)  # weights_only=True, mmengine's types allow-listed
    assert {'meta', 'state_dict', 'message_hub', 'optimizer'} <= set(loaded)


def test_restricted_getattr_refuses_other_attributes():
    from mmdwnet.utils.torch_load import _history_buffer_method
    from mmengine.logging.history_buffer import HistoryBuffer
    assert _history_buffer_method(HistoryBuffer, 'mean') is HistoryBuffer.mean
    import pickle
    with pytest.raises(pickle.UnpicklingError, match='refusing getattr'):
        _history_buffer_method(HistoryBuffer, '__init__')
    with pytest.raises(pickle.UnpicklingError, match='refusing getattr'):
        _history_buffer_method(torch, 'load')


def test_resume_round_trip_equals_uninterrupted_run(tmp_path):
    full = _runner(tmp_path / 'full', 4, False)
    full.train()
    part = _runner(tmp_path / 'part', 2, False)
    part.train()
    resumed = _runner(tmp_path / 'part', 4, True)
    resumed.train()
    assert resumed.iter == 4
    hub = resumed.message_hub.get_scalar('train/loss')
    assert len(hub.data[0]) == 4  # the loss history of the first run was restored
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
