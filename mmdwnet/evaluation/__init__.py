"""Evaluation metrics registered into mmpretrain's ``METRICS`` (needs mmpretrain)."""
from .real_accuracy import ReaLAccuracy, ReaLLabelsError, image_index, load_real_labels

__all__ = ['ReaLAccuracy', 'ReaLLabelsError', 'image_index', 'load_real_labels']
