"""Measure the paper's Table 1 properties of the spatial mixers by probing them numerically.

The usage, options and behaviour are documented in :mod:`mmdwnet.analysis.connectivity.cli`.
"""
import sys

from mmdwnet.analysis.connectivity.cli import main

if __name__ == '__main__':
    sys.exit(main())
