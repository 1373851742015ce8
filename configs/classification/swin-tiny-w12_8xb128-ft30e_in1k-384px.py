# Table 14: Swin-T fine-tuned at 384x384 for 30 epochs from the 224 model, window 12;
# Appendix E: drop path 0.1.
_base_ = [
    './_base_/models/tiny_224.py',
    './_base_/datasets/imagenet_bs128_swin_384.py',
    './_base_/schedules/imagenet_bs1024_adamw_30e_ft-384px.py',
    './_base_/default_runtime.py',
]

model = dict(
    backbone=dict(type='SwinNet', img_size=384, drop_path_rate=0.1, mixer=dict(window_size=12)))

# A 224 checkpoint resized to window 12:
#   python tools/analysis_tools/resize_kernels.py CKPT_224 \
#       checkpoints/swin-tiny-w12_in1k-384px_init.pth --config THIS_CONFIG
load_from = 'checkpoints/swin-tiny-w12_in1k-384px_init.pth'
