# Table 14: DWNet-T fine-tuned at 384x384 for 30 epochs from the 224 model, kernel 13.
# The paper's kernel is 12; depth-wise kernels here must be odd (same-size output), so the
# nearest odd size 13 stands in for it.
_base_ = [
    './_base_/models/tiny_224.py',
    './_base_/datasets/imagenet_bs128_swin_384.py',
    './_base_/schedules/imagenet_bs1024_adamw_30e_ft.py',
    './_base_/default_runtime.py',
]

model = dict(backbone=dict(type='DWNet', img_size=384, mixer=dict(kernel_size=13)))

# A 224 checkpoint resized to kernel 13:
#   python tools/analysis_tools/resize_kernels.py CKPT_224 \
#       checkpoints/dwnet-tiny-k13_in1k-384px_init.pth --config THIS_CONFIG
load_from = 'checkpoints/dwnet-tiny-k13_in1k-384px_init.pth'
