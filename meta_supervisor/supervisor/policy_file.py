"""Reading the supervisor's policy file: YAML that may not repeat a key, and the allowed range of every value.

``read_policy_yaml`` parses the file with ``UniqueKeyLoader`` (PyYAML's safe loader, refusing a mapping
that repeats a key instead of silently keeping the last); ``threshold`` and ``count`` check one value
against its allowed range. Every failure is a one-line ``ConfigError`` naming the key, the value and the
allowed range, so ``supervise`` exits 2 with it. ``meta_supervisor/supervisor/policy.py`` builds the ``Policy``;
``docs/policy.md`` lists the ranges.

Reads no environment variables.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from settings.config_error import ConfigError

MAX_WINDOW_DAYS = 36_500  # a hundred years: more is a typo (and overflows the calendar)
# The range each judged figure can take; a threshold outside it would fire always or never.
FIGURE_RANGES: dict[str, tuple[float | None, float | None]] = {
    "error_rate": (0.0, 1.0),
    "cost_per_day_usd": (0.0, None),
    "p95_latency_ms": (0.0, None),
    "ic": (-1.0, 1.0),
    "ic_t_stat_hac": (None, None),  # the Newey-West t-stat the t-stat rules judge
    "hit_rate": (0.0, 1.0),
    "brier": (0.0, 1.0),
    "net_sharpe": (None, None),  # annualised Sharpe of the agent's portfolio net of its LLM bill
    "break_even_capital_usd": (0.0, None),
}
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _RepeatedKey(Exception):
    def __init__(self, key: str, line: int, first_line: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping repeating a key (``_RepeatedKey`` with its dotted
    path and both lines); YAML itself says keys are unique, PyYAML keeps the last."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._paths: dict[int, str] = {}  # id(mapping node) -> "retire." (its dotted prefix)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        prefix = self._paths.get(id(node), "")
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _RepeatedKey(f"{prefix}{key}", line, seen[key])
                seen[key] = line
            except TypeError:  # an unhashable key: the safe loader's own error follows
                continue
            self._paths[id(value_node)] = f"{prefix}{key}."
        return super().construct_mapping(node, deep)


def one_line(text: str) -> str:
    return " ".join(text.split())


def read_policy_yaml(target: Path) -> Any:
    """The parsed document of the policy file at ``target``; ``ConfigError`` (one line) otherwise
    (``FileNotFoundError`` is the caller's to word)."""
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(one_line(f"cannot read policy file {target}: {exc}")) from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except _RepeatedKey as exc:
        raise ConfigError(
            f"policy file {target}: {exc.key} is given twice (lines {exc.first_line} and {exc.line}); each key may appear once"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(one_line(f"policy file {target} is not valid YAML: {exc}")) from None


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"from {low:g} to {high:g}"
    if low is not None:
        return f">= {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return "finite"


def threshold(value: Any, key: str, figure: str, source: str) -> float | None:
    """A rule's threshold: ``None`` (rule off) or a finite number in its figure's range."""
    if value is None:
        return None
    low, high = FIGURE_RANGES[figure]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        raise ConfigError(f"{source}: {key} must be a number {_range_text(low, high)} ({figure}), or null (rule off); got {value!r}")
    return float(value)


def count(value: Any, key: str, source: str, minimum: int = 1, maximum: int | None = None) -> int:
    """A whole number from ``minimum`` to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(f"{source}: {key} must be a whole number {_range_text(minimum, maximum)}, got {value!r}")
    return value
