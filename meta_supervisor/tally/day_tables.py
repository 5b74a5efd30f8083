"""Per-day tables of an agent's tally (``day_runs``, ``asof_runs``, ``day_models``) in a packed form.

An agent's per-day tables grow with the days a file covers: 1,000 agents over 30 days are 30,000
rows a table, and as dicts of lists of ints they were ~200-300 bytes a row (the dict's slot, the
key, the list, an int object per count): 15 MB of a 5 M-span build's main process. ``DayTable``
keeps the same rows as one ``array('q')``, a row its key's columns then its counts (8 bytes each):
a day (days since the epoch) for ``day_runs`` / ``asof_runs``; for ``day_models`` the day, the
model's index in the table's list of model names and the simulated flag. The rows stay in
insertion order, so a table is saved, iterated and merged in the order its dict had. It is a
read-only mapping key -> tuple of counts (a tuple: a count changed in it would be lost, so changing
one fails); the Python reader counts into a plain dict (``counting``). A table that does not fit
(a count or a day outside 64 bits, a key of another type) stays a dict of lists.

Reads no environment variables.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Iterator, Mapping
from typing import Any


class DayTable(Mapping):
    """key -> counts (a tuple of ``width`` ints), packed. ``models`` None: the key is a day (an
    int); else it is ``(day, model, simulated)`` with ``model`` one of ``models``."""

    __slots__ = ("models", "rows", "width")

    def __init__(self, rows: array, width: int, models: list[str] | None) -> None:
        self.rows = rows
        self.width = width
        self.models = models

    @property
    def _key_width(self) -> int:
        return 1 if self.models is None else 3

    def _key(self, at: int) -> Any:
        rows = self.rows
        if self.models is None:
            return rows[at]
        return rows[at], self.models[rows[at + 1]], bool(rows[at + 2])

    def _find(self, key: Any) -> int:
        """The index in ``rows`` of ``key``'s row, or -1."""
        stride = self._key_width + self.width
        rows = self.rows
        if self.models is None:
            if type(key) is not int:
                return -1
            days = rows[::stride]
            try:
                return days.index(key) * stride
            except (ValueError, OverflowError):
                return -1
        if type(key) is not tuple or len(key) != 3 or key[1] not in self.models or type(key[2]) is not bool:
            return -1
        model, simulated = self.models.index(key[1]), int(key[2])
        for at in range(0, len(rows), stride):
            if rows[at] == key[0] and rows[at + 1] == model and rows[at + 2] == simulated:
                return at
        return -1

    def __getitem__(self, key: Any) -> tuple:
        at = self._find(key)
        if at < 0:
            raise KeyError(key)
        at += self._key_width
        return tuple(self.rows[at : at + self.width])

    def __contains__(self, key: object) -> bool:
        return self._find(key) >= 0

    def __iter__(self) -> Iterator:
        stride = self._key_width + self.width
        for at in range(0, len(self.rows), stride):
            yield self._key(at)

    def __len__(self) -> int:
        return len(self.rows) // (self._key_width + self.width)

    def items(self) -> Iterator[tuple[Any, tuple]]:  # type: ignore[override]
        rows, width, skip = self.rows, self.width, self._key_width
        for at in range(0, len(rows), skip + width):
            yield self._key(at), tuple(rows[at + skip : at + skip + width])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return len(self) == len(other) and all(key in other and list(other[key]) == list(row) for key, row in self.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"DayTable({dict(self.items())!r})"

    def __getstate__(self) -> tuple:
        # a list of ints: pickle writes a small count in 2 bytes, not 8 (a worker's part)
        return self.rows.tolist(), self.width, self.models

    def __setstate__(self, state: tuple) -> None:
        rows, self.width, self.models = state
        self.rows = array("q", rows)
        if self.models is not None:  # one string a model name, not one an agent (1,000 agents)
            self.models = [sys.intern(model) for model in self.models]


def packed(rows: Iterable[tuple[Any, Iterable[int]]], width: int, models: bool = False) -> DayTable | dict:
    """A table of ``(key, counts)`` rows (``width`` counts each, keys distinct), in their order:
    packed (``models``: keys ``(day, model, simulated)``, else days), or a dict of lists when it
    does not fit (a count or a day outside 64 bits, a key of another type, a row not ``width`` long)."""
    packed_rows = array("q")
    names: list[str] = []
    places: dict[str, int] = {}
    pairs = rows if isinstance(rows, list) else list(rows)
    try:
        for key, row in pairs:
            if models:
                day, model, simulated = key
                if type(day) is not int or type(model) is not str or type(simulated) is not bool:
                    raise TypeError(key)
                place = places.get(model)
                if place is None:
                    place = places[model] = len(names)
                    names.append(sys.intern(model))
                packed_rows.extend((day, place, simulated))
            else:
                if type(key) is not int:
                    raise TypeError(key)
                packed_rows.append(key)
            before = len(packed_rows)
            packed_rows.extend(row)
            if len(packed_rows) - before != width:
                raise ValueError(width)
    except (OverflowError, TypeError, ValueError):
        return {key: list(row) for key, row in pairs}
    return DayTable(packed_rows, width, names if models else None)


def counting(table: Mapping) -> dict:
    """``table`` as the dict of lists the Python reader counts into (itself if it is one)."""
    if type(table) is dict:
        return table
    return {key: list(row) for key, row in table.items()}


def merged(mine: Mapping, theirs: Mapping) -> Mapping:
    """``mine`` plus ``theirs`` (counts of the same key added; new keys after ``mine``'s, in
    ``theirs``' order), as ``_merge_lists`` adds two dicts: packed when both are packed (or ``mine``
    is empty and ``theirs`` packed), else a dict (``mine`` itself, added into). Two packed tables of
    one kind are merged on their arrays (``_merged_rows``)."""
    if not theirs:
        return mine
    both_packed = type(theirs) is DayTable and type(mine) is DayTable
    if both_packed and mine.width == theirs.width and (mine.models is None) == (theirs.models is None):
        try:
            return _merged_rows(mine, theirs)
        except OverflowError:  # a sum beyond 64 bits: the rows as ints, below (a dict of lists)
            pass
    if type(theirs) is DayTable and (type(mine) is DayTable or not mine):
        width = theirs.width
        keys = list(mine)
        rows = [list(row) for _, row in mine.items()]
        places = {key: i for i, key in enumerate(keys)}
        for key, row in theirs.items():
            at = places.get(key)
            if at is None:
                places[key] = len(keys)
                keys.append(key)
                rows.append(list(row))
            else:
                target = rows[at]
                for i in range(width):
                    target[i] += row[i]
        return packed(list(zip(keys, rows, strict=True)), width, theirs.models is not None)
    target = counting(mine)
    for key, values in theirs.items():
        row = target.get(key)
        if row is None:
            target[key] = list(values)
        else:
            for i, value in enumerate(values):
                row[i] += value
    return target


def _merged_rows(mine: DayTable, theirs: DayTable) -> DayTable:
    """``merged`` of two packed tables of the same kind and width, row by row on their arrays (no
    tuple, list or key made per count, no table packed again: 1,000 agents are ~3,000 such merges a
    part, of a row or two each): the same rows, keys and order as ``merged`` makes. ``OverflowError``
    when a sum does not fit 64 bits (``merged`` then makes the dict of lists)."""
    rows = array("q", mine.rows)  # a new table: ``mine``'s rows may be shared (never changed in place)
    their_rows = theirs.rows
    skip = mine._key_width
    stride = skip + mine.width
    if mine.models is None:
        places = {day: at for at, day in zip(range(0, len(rows), stride), rows[::stride], strict=True)}
        for at, day in zip(range(0, len(their_rows), stride), their_rows[::stride], strict=True):
            place = places.get(day)
            if place is None:
                places[day] = len(rows)
                rows.extend(their_rows[at : at + stride])
            else:
                for column in range(1, stride):
                    rows[place + column] += their_rows[at + column]
        return DayTable(rows, mine.width, None)
    # a key is (day, model, simulated) with the model as its index in the result's names: those of
    # ``mine`` (in the order its rows first name them, as ``packed`` makes them), then the ones only
    # ``theirs`` has, in the order its rows (new rows, since ``mine`` lacks the name) first name them
    models = list(mine.models)
    index = {name: at for at, name in enumerate(models)}
    remap = [index.get(name, -1) for name in theirs.models]
    places = {(rows[at], rows[at + 1], rows[at + 2]): at for at in range(0, len(rows), stride)}
    for at in range(0, len(their_rows), stride):
        model = remap[their_rows[at + 1]]
        if model < 0:
            model = remap[their_rows[at + 1]] = len(models)
            models.append(theirs.models[their_rows[at + 1]])
        key = (their_rows[at], model, their_rows[at + 2])
        place = places.get(key)
        if place is None:
            places[key] = len(rows)
            rows.extend(their_rows[at : at + stride])
            rows[len(rows) - stride + 1] = model
        else:
            for column in range(3, stride):
                rows[place + column] += their_rows[at + column]
    return DayTable(rows, mine.width, models)
