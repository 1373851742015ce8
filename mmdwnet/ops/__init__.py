from .local_aggregation import (local_aggregate, local_aggregate_loop,
                                local_aggregate_pointwise, local_aggregate_unfold,
                                local_correlate)

__all__ = [
    'local_aggregate', 'local_aggregate_pointwise', 'local_correlate', 'local_aggregate_unfold',
    'local_aggregate_loop'
]
