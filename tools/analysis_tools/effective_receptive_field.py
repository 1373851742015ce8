"""Effective receptive field of one backbone stage, on CPU.

    python tools/analysis_tools/effective_receptive_field.py CONFIG [--checkpoint CKPT]
        [--stage 3] [--images skimage|random|DIR] [--num-images 4] [--img-size 224]
        [--out erf.png] [--cfg-options ...]

Builds the config's model (random init, or ``--checkpoint``), takes its backbone and averages,
over the images, the absolute gradient of the centre position of stage ``--stage``'s output
(summed over channels) w.r.t. the input image.  Writes the heat map (``--out``, PNG) and the raw
array next to it (``.npy``) and prints the area ratios holding 20/30/50/99 % of the ERF.
"""
import sys

from mmdwnet.analysis.erf_cli import main

if __name__ == '__main__':
    sys.exit(main())
