from .local_aggregation import (local_aggregate, local_aggregate_unfold, local_correlate)

__all__ = ['local_aggregate', 'local_correlate', 'local_aggregate_unfold']
