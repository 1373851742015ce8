from .hooks import CompileModulesHook
from .safe_loading_hook import SafeLoadingHook

__all__ = ['CompileModulesHook', 'SafeLoadingHook']
