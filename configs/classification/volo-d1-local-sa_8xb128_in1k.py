# Table 13: VOLO-D1 with 7x7 local (sliding-window) self-attention instead of the Outlooker.
_base_ = ['./volo-d1_8xb128_in1k.py']

model = dict(backbone=dict(
    mixer=dict(_delete_=True, type='SlidingWindowAttention', kernel_size=7, qkv_bias=False)))
