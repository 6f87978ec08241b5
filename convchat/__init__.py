__version__ = "0.1.0"

# The original design's classes (convchat.api), imported on first use (PEP 562): `import convchat` stays light, and a chat-only
# install without torch can still use `convchat.ChatInterface`.
_LAZY = dict.fromkeys(('ConversationDataHandler', 'LLMTrainer', 'ONNXConverter', 'ChatInterface'), 'api')

def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f'{__name__}.{_LAZY[name]}'), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

def __dir__(): return sorted([*globals(), *_LAZY])
