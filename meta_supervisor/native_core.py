"""Whether the report uses its compiled core (the Rust extension ``alphatrace_native``), and the module.

A leaf: the fingerprint tables (``tally.fingerprints``), the latency sort (``tally.latency``) and
the native reader (``build.native_reader``) all ask here, so the setting is read by one rule.

Environment: ``ALPHATRACE_NATIVE`` = ``auto`` (default: use it when installed), ``off`` (never), or
``on`` (require it: a ``ConfigError`` when it is not installed).
"""

from __future__ import annotations

import os

from settings.config_error import ConfigError

ENV = "ALPHATRACE_NATIVE"
MODES = ("auto", "on", "off")


def mode() -> str:
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ConfigError(f"{ENV}={value!r}: expected one of {', '.join(MODES)}")
    return value


def core():
    """The compiled module, or None (not installed, or ``ALPHATRACE_NATIVE=off``)."""
    chosen = mode()
    if chosen == "off":
        return None
    try:
        import alphatrace_native
    except ImportError:
        if chosen == "on":
            raise ConfigError(f"{ENV}=on but the native core is not installed (make native)") from None
        return None
    return alphatrace_native


def available() -> bool:
    return core() is not None


def json_check():
    """The core's ``orjson_writes_as_json`` (``render.outputs``: whether orjson writes a value as the
    standard library's ``json`` does, known without encoding it), or None (``optional``: the caller
    then encodes to compare)."""
    return optional("orjson_writes_as_json")


def optional(name: str):
    """The core's function ``name``, or None: no core, an older core without it, or
    ``ALPHATRACE_NATIVE`` off or unreadable (the caller then does it in Python)."""
    try:
        module = core()
    except ConfigError:
        return None
    return getattr(module, name, None)
