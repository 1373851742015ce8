"""Effective receptive field of one backbone stage, on CPU.

The usage, options and behaviour are documented in :mod:`mmdwnet.analysis.erf_cli`.
"""
import sys

from mmdwnet.analysis.erf_cli import main

if __name__ == '__main__':
    sys.exit(main())
