from .local_aggregation import (dynamic_depthwise_conv2d, local_aggregate,
                                local_aggregate_loop, local_aggregate_pointwise,
                                local_aggregate_unfold, local_correlate)

__all__ = [
    'local_aggregate', 'local_aggregate_pointwise', 'local_correlate', 'local_aggregate_unfold',
    'local_aggregate_loop', 'dynamic_depthwise_conv2d'
]
