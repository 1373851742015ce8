# Table 14: DWNet-T fine-tuned at 384x384 for 30 epochs from the 224 model, kernel 12.
# An even kernel keeps the map size with the extra padding row / column at the bottom / right
# (PyTorch's padding='same'); 24.59M parameters.  Appendix E: drop path 0.1.
_base_ = [
    './_base_/models/tiny_224.py',
    './_base_/datasets/imagenet_bs128_swin_384.py',
    './_base_/schedules/imagenet_bs1024_adamw_30e_ft-384px.py',
    './_base_/default_runtime.py',
]

model = dict(
    backbone=dict(type='DWNet', img_size=384, drop_path_rate=0.1, mixer=dict(kernel_size=12)))

# The 224 checkpoint with its 7x7 kernels upsampled to 12x12 (bicubic, as Swin):
#   python tools/analysis_tools/resize_kernels.py CKPT_224 \
#       checkpoints/dwnet-tiny-k12_in1k-384px_init.pth --config THIS_CONFIG
load_from = 'checkpoints/dwnet-tiny-k12_in1k-384px_init.pth'
