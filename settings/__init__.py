"""The leaf every other package may import: the one rule for bad configuration (``config_error``).

Imports nothing of alphatrace, so ``otel``, ``services``, ``alpha``, ``agents`` and
``meta_supervisor`` can all raise the same ``ConfigError`` (exit 2, one line) without importing
each other.
"""
