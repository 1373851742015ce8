# ADE20K test-set PNGs (labels 1..150) for the benchmark server from the model of
# upernet_swin-base-in21k-pre_8xb2-160k_ade20k-512x512.py; see docs/segmentation.md.
_base_ = [
    './upernet_swin-base-in21k-pre_8xb2-160k_ade20k-512x512.py',
    './_base_/ade20k_test_submission.py',
]
test_dataloader = {{_base_.submission_dataloader}}
test_evaluator = {{_base_.submission_evaluator}}
