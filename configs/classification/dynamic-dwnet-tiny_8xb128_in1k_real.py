# dynamic-dwnet-tiny_8xb128_in1k: top-1/top-5 and ReaL top-1 (Table 2); needs real.json.
_base_ = ['./dynamic-dwnet-tiny_8xb128_in1k.py', './_base_/evaluators/imagenet_real.py']
val_evaluator = {{_base_.real_evaluator}}
test_evaluator = val_evaluator
