"""The compiled encoder (otel/otlp_json_compiled.py, msgspec) writes exactly the bytes of the pure-
Python reference (otel/otlp_json.py), which the collector-format tests check against the real
collector: compared byte for byte on generated spans with odd attribute types, non-ASCII, lone
surrogates, NaN and infinities, huge ints, bytes, arrays, maps, events, links and statuses."""

from __future__ import annotations

import enum
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from otel import otlp_json, otlp_json_compiled
from tests.fixtures.collector.make_samples import make_spans


class Word(str):
    def __str__(self) -> str:  # never used by either encoder for the text itself
        return "not the text"


class Count(int):
    pass


class Level(enum.IntEnum):
    HIGH = 3


class Ratio(float):
    pass


class Opaque:
    def __str__(self) -> str:
        return "opaque ✓"


# Every code point, lone surrogates (category Cs) and controls included.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
plain_text = st.text(max_size=12)
scalars = st.one_of(
    any_text,
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e-3, max_value=1e-3),
    st.floats(min_value=1e15, max_value=1e300),
    st.binary(max_size=12),
    st.none(),
    plain_text.map(Word),
    st.integers().map(Count),
    st.just(Level.HIGH),
    st.floats(allow_nan=False).map(Ratio),
    st.just(Opaque()),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(plain_text, inner, max_size=3),
        st.builds(bytearray, st.binary(max_size=4)),
    ),
    max_leaves=8,
)
attribute_maps = st.dictionaries(st.one_of(plain_text, any_text), values, max_size=6)


def bounded(attributes: dict, maxlen: int | None) -> BoundedAttributes:
    """As the SDK stores them (values cleaned, oldest dropped past ``maxlen``)."""
    return BoundedAttributes(maxlen, attributes, immutable=True)


ids = st.integers(min_value=1, max_value=2**64 - 1)
trace_ids = st.integers(min_value=1, max_value=2**128 - 1)


BOTH = st.booleans()


@st.composite
def contexts(draw, remote=BOTH):
    state = draw(st.sampled_from([TraceState(), TraceState([("vendor", "v1"), ("other", "x")])]))
    return SpanContext(draw(trace_ids), draw(ids), is_remote=draw(remote), trace_flags=TraceFlags(1), trace_state=state)


@st.composite
def spans(draw, resources, scopes):
    attributes = draw(attribute_maps)
    maxlen = draw(st.sampled_from([None, None, 2]))
    kept = draw(st.sampled_from(["dict", "bounded"]))
    events = [
        Event(
            draw(any_text),
            bounded(draw(attribute_maps), draw(st.sampled_from([None, 1]))) if draw(st.booleans()) else draw(attribute_maps),
            timestamp=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    links = [Link(draw(contexts()), draw(attribute_maps)) for _ in range(draw(st.integers(0, 2)))]
    code = draw(st.sampled_from(list(StatusCode)))
    description = draw(st.one_of(st.none(), any_text)) if code is StatusCode.ERROR else None
    return ReadableSpan(
        name=draw(any_text),
        context=draw(contexts(st.just(False))),
        parent=draw(st.one_of(st.none(), contexts())),
        resource=draw(st.sampled_from(resources)),
        attributes=bounded(attributes, maxlen) if kept == "bounded" else attributes,
        events=events,
        links=links,
        kind=draw(st.sampled_from(list(SpanKind))),
        status=Status(code, description),
        start_time=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1))),
        end_time=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1))),
        instrumentation_scope=draw(st.sampled_from(scopes)),
    )


RESOURCES = [
    Resource({"service.name": "alphatrace", "service.instance.id": "p-1", "n": 3}),
    Resource({"service.name": "other ✓", "ratio": 0.5, "list": ("a", "b")}, schema_url="https://opentelemetry.io/schemas/1.30.0"),
    Resource({}),
]
SCOPES = [
    InstrumentationScope("alphatrace", "0.1.0"),
    InstrumentationScope("opentelemetry.instrumentation.genai.openai", "1.3b0", "https://opentelemetry.io/schemas/1.28.0"),
    InstrumentationScope("", None),
    None,
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(spans(RESOURCES, SCOPES), min_size=1, max_size=5))
def test_the_compiled_encoder_writes_the_reference_bytes(batch):
    assert otlp_json_compiled.encode_line(batch) == otlp_json.encode_line(batch)


@settings(max_examples=300, deadline=None)
@given(values)
def test_each_attribute_value_encodes_to_the_reference_json(value):
    span = ReadableSpan(name="v", context=SpanContext(1, 1, False), attributes={"v": value}, resource=RESOURCES[0])
    assert otlp_json_compiled.encode_line([span]) == otlp_json.encode_line([span])


def test_the_collector_fixture_spans_encode_to_the_same_bytes():
    spans_ = make_spans()
    assert otlp_json_compiled.encode_line(spans_) == otlp_json.encode_line(spans_)


def test_floats_are_written_as_python_writes_them_not_as_msgspec_does():
    values_ = [1e-05, 2.5e-05, 1e16, 1e22, 1.7976931348623157e308, 5e-324, 0.1, -0.0, 0.0, 100.0, math.nan, math.inf, -math.inf]
    span = ReadableSpan(name="f", context=SpanContext(1, 1, False), attributes={f"f{i}": v for i, v in enumerate(values_)})
    line = otlp_json_compiled.encode_line([span])
    assert line == otlp_json.encode_line([span])
    assert b'{"doubleValue":1e-05}' in line and b'{"doubleValue":1e+16}' in line and b'{"doubleValue":"NaN"}' in line


def test_a_lone_surrogate_batch_falls_back_to_the_reference_and_stays_valid_utf8():
    span = ReadableSpan(name="s", context=SpanContext(1, 1, False), attributes={"t": "a\ud800b", "pair": "\ud83d\ude00"})
    line = otlp_json_compiled.encode_line([span])
    assert line == otlp_json.encode_line([span])
    attrs = {a["key"]: a["value"] for a in json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]}
    assert attrs["t"] == {"stringValue": "a\ufffdb"}


def test_repeated_string_attributes_are_cached_and_bounded(monkeypatch):
    monkeypatch.setattr(otlp_json_compiled, "_PAIR_CACHE_SIZE", 8)
    tables = {str: {}, int: {}, float: {}}
    monkeypatch.setattr(otlp_json_compiled, "_TABLES", tables)
    batch = [
        ReadableSpan(
            name="s",
            context=SpanContext(1, i + 1, False),
            attributes={
                **{"agent": "momentum", "run": f"run-{i}", "long": "x" * 300, "n": i, "one": 1},
                **{"yes": True, "f": 1.0, "z": -0.0 if i % 2 else 0.0},
            },
        )
        for i in range(40)
    ]
    assert otlp_json_compiled.encode_line(batch) == otlp_json.encode_line(batch)
    assert all(0 < len(table) <= 8 for table in tables.values())
    assert ("long", "x" * 300) not in tables[str] and ("z", 0.0) not in tables[float]
    assert b'{"key":"yes","value":{"boolValue":true}}' in otlp_json_compiled.encode_line(batch)
