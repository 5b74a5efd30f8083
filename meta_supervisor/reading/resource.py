"""What a span's resource says about its spans: whether their LLM calls were simulated, and which
process wrote them (``service.name``, ``service.instance.id``: the key of ``inputs.telemetry_losses``;
with ``host.name`` and ``alphatrace.shard``, the row of the per-host table).

Read for every request, by the aggregator (``tally.span_aggregator``) and by the lenient JSON path
of ``shapes``. Reads no environment variables.
"""

from __future__ import annotations

from collections.abc import Iterable

from meta_supervisor.reading.otlp_schema import ResourceKeyValue, as_bool, as_str
from otel import semconv

_SERVICE_NAME = semconv.SERVICE_NAME
_SERVICE_INSTANCE_ID = semconv.SERVICE_INSTANCE_ID
_HOST_NAME = semconv.HOST_NAME
_SHARD = semconv.RESOURCE_SHARD


def is_tail_sampled(attributes: Iterable[ResourceKeyValue]) -> bool:
    """Whether a tail-sampling collector kept these spans (``alphatrace.sampling`` on the resource,
    ``collector-config.yaml``): the file then holds the traces kept, not all of them."""
    return any(kv.key == semconv.RESOURCE_SAMPLING for kv in attributes)


def resource_facts(attributes: Iterable[ResourceKeyValue]) -> tuple[bool, tuple]:
    """Of a resource: whether its LLM calls were simulated, and its process, i.e. its
    (``service.name``, ``service.instance.id``, ``host.name``, ``alphatrace.shard``), each None when absent."""
    simulated = False
    service = instance = host = shard = None
    for kv in attributes:
        key = kv.key
        if key == semconv.RESOURCE_LLM_SIMULATED:
            simulated = as_bool(kv.value)
        elif key == _SERVICE_INSTANCE_ID:
            instance = as_str(kv.value)
        elif key == _SERVICE_NAME:
            service = as_str(kv.value)
        elif key == _HOST_NAME:
            host = as_str(kv.value)
        elif key == _SHARD:
            shard = as_str(kv.value)
    return simulated, (service, instance, host, shard)
