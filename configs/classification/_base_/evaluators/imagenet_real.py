# ImageNet val scored twice: top-1/top-5 against the original labels and top-1 against the
# reassessed "ReaL" labels (Beyer et al. 2020) of data/imagenet/real.json, the file published at
# github.com/google-research/reassessed-imagenet.  ReaLAccuracy matches images by their original
# file names (ILSVRC2012_val_NNNNNNNN.JPEG) and stops with an error when the file is missing or
# malformed.  *_real.py configs use it as `val_evaluator = {{_base_.real_evaluator}}`.
real_evaluator = [
    dict(type='Accuracy', topk=(1, 5)),
    dict(type='ReaLAccuracy', ann_file='data/imagenet/real.json', topk=(1, )),
]
