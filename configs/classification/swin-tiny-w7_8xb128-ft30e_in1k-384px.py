# Table 14: Swin-T fine-tuned at 384x384 for 30 epochs from the 224 model, window 7;
# Appendix E: drop path 0.1.
_base_ = [
    './_base_/models/tiny_224.py',
    './_base_/datasets/imagenet_bs128_swin_384.py',
    './_base_/schedules/imagenet_bs1024_adamw_30e_ft-384px.py',
    './_base_/default_runtime.py',
]

model = dict(
    backbone=dict(type='SwinNet', img_size=384, drop_path_rate=0.1, mixer=dict(window_size=7)))

# The 224 checkpoint loads as is: no weight depends on the input size.
load_from = 'checkpoints/swin-tiny_in1k.pth'  # the conversion command's output name
