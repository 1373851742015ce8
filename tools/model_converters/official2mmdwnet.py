"""Convert an official DemystifyLocalViT or Swin checkpoint into mmdwnet's layout.

The usage, options and behaviour are documented in :mod:`mmdwnet.converters.official2mmdwnet`.
"""
import sys

from mmdwnet.converters.official2mmdwnet import main

if __name__ == '__main__':
    sys.exit(main())
