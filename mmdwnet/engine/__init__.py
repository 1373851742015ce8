from .hooks import CompileModulesHook

__all__ = ['CompileModulesHook']
