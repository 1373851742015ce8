from .torch_load import allow_mmengine_checkpoints, mmengine_safe_globals

__all__ = ['allow_mmengine_checkpoints', 'mmengine_safe_globals']
