"""Exporter support for the mmdwnet ops (placeholder being written in this session).

Contract used by :mod:`mmdwnet.ops`: every public op first asks :func:`exporting`; when it is
True the op returns the decomposition into standard PyTorch ops defined here (same signature).
"""
import torch

__all__ = ['exporting']


def exporting() -> bool:
    """True while an exporter traces the model (TorchScript ONNX export)."""
    return bool(torch.onnx.is_in_onnx_export())
