from .complexity import count_flops, count_params, flop_analyzer

__all__ = ['flop_analyzer', 'count_flops', 'count_params']
