from .torch_load import (CheckpointReadError, UnsafeCheckpointError, allow_mmengine_checkpoints,
                         is_safe_loading, mmengine_safe_globals, safe_loading, safe_torch_load)

__all__ = ['safe_loading', 'is_safe_loading', 'safe_torch_load', 'allow_mmengine_checkpoints',
           'mmengine_safe_globals', 'CheckpointReadError', 'UnsafeCheckpointError']
