"""Evaluate a checkpoint on a config's test set (classification, detection, segmentation).

The usage, options and behaviour are documented in :mod:`mmdwnet.apis.test`.
"""
from mmdwnet.apis.test import main

if __name__ == '__main__':
    main()
