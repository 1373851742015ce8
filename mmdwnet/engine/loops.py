"""An epoch-based training loop that resumes in the middle of an epoch where the run stopped."""
from typing import Any, Dict, Union

from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop, Runner
from torch.utils.data import DataLoader


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop``, resuming exactly from iteration checkpoints.

    mmengine resumes a checkpoint written in the middle of an epoch (``CheckpointHook(
    by_epoch=False)``) by training that whole epoch again. This loop instead continues at the
    batch after the checkpoint: the epoch's data loader runs from its start (the same sampler
    order, the same worker seeds) and the batches trained before the checkpoint are loaded but
    not trained again, so every augmentation that follows draws the same random numbers as in
    the uninterrupted run; then :class:`~mmdwnet.engine.ExactResumeHook` (when registered)
    restores the random state saved with the checkpoint. Replaying costs the data loading of
    those batches, no forward or backward pass.

    Args:
        runner, dataloader, max_epochs, val_begin, val_interval, dynamic_intervals: see
            ``mmengine.runner.EpochBasedTrainLoop``.
        by_epoch (bool): must be True (accepted so that ``train_cfg`` can keep
            ``by_epoch=True`` next to ``type``).
    """

    def __init__(self, runner: Runner, dataloader: Union[DataLoader, Dict], max_epochs: int,
                 by_epoch: bool = True, **kwargs: Any) -> None:
        if not by_epoch:
            raise ValueError('ResumableEpochBasedTrainLoop is epoch based: remove '
                             "train_cfg.type for an iteration-based run (by_epoch=False)")
        super().__init__(runner, dataloader, max_epochs, **kwargs)

    def run_epoch(self) -> None:
        """Train one epoch; after a mid-epoch resume, only its batches not yet trained."""
        done = self._iter - self._epoch * len(self.dataloader)
        if done == 0:
            return super().run_epoch()
        if not 0 < done <= len(self.dataloader):
            raise RuntimeError(
                f'the resumed checkpoint is at iteration {self._iter} of epoch {self._epoch + 1}, '
                f'but an epoch has {len(self.dataloader)} iterations now: the data set or batch '
                'size differs from the run that wrote it. Resume with the same data and '
                'train_dataloader.batch_size, or start a new run from its weights (load_from)')
        from .hooks import ExactResumeHook
        hooks = [h for h in self.runner.hooks if isinstance(h, ExactResumeHook)]
        self.runner.logger.info(
            f'resuming in epoch {self._epoch + 1} after its iteration {done}: loading its first '
            f'{done} batches again (not trained) to continue the data stream exactly')
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        for idx, data_batch in enumerate(self.dataloader):
            if idx < done:
                if idx == done - 1:
                    for hook in hooks:
                        hook.restore_rng_state(self.runner)
                continue
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
