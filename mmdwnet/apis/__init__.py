from .inference import CheckpointMismatch, init_model

__all__ = ['init_model', 'CheckpointMismatch']
