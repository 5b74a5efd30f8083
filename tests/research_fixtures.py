"""A fleet of research_analyst alone over the test world, and a simulated model that keeps what it
served: for the tool-loop, streaming and kill tests."""

from __future__ import annotations

import json

import httpx2

from otel import semconv
from services.research_tools import TOOL_MARKET_REGIME, TOOL_PRICE_FEATURES, TOOL_RECENT_CLOSES
from services.simulated_llm import SimulatedLLMTransport
from tests.fleet_fixtures import build_test_fleet

_CHAT = f"{semconv.OPERATION_CHAT} gpt-4o-mini"
# The children of one research_analyst run over a two-symbol universe with the simulated model, in
# the order they start: the regime and both symbols' features asked at once, one symbol's last closes,
# then the verdict.
TWO_SYMBOL_RUN = [
    _CHAT,
    semconv.tool_span_name(TOOL_MARKET_REGIME),
    semconv.tool_span_name(TOOL_PRICE_FEATURES),
    semconv.tool_span_name(TOOL_PRICE_FEATURES),
    _CHAT,
    semconv.tool_span_name(TOOL_RECENT_CLOSES),
    _CHAT,
]

RESEARCH_TOML = """
[fleet]
universe = ["SPX", "WTI"]
max_workers = 2
misfire_grace_seconds = 30

[replay]
start = "{start}"
cycles = 1

[llm]
provider = "{provider}"
model = "gpt-4o-mini"

[agents.research_analyst]
status = "shadow"
interval_seconds = 0.05
params = {params}
"""


class RecordingModel(SimulatedLLMTransport):
    """The simulated model, keeping every request body and every answer it served."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict] = []
        self.answers: list[dict] = []
        self.streams: list[bytes] = []  # the server-sent events of streamed answers

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(request)
        self.bodies.append(json.loads(request.content))
        content = response.read()
        if response.headers["content-type"].startswith("text/event-stream"):
            self.streams.append(content)
        else:
            self.answers.append(json.loads(content))
        return response


def research_config(world, provider="simulated", **params):
    """The world's config path rewritten for a fleet of research_analyst alone, with ``params``."""
    inline = "{ " + ", ".join(f"{key} = {json.dumps(value)}" for key, value in params.items()) + " }"
    path = world["tmp"] / "research.toml"
    path.write_text(RESEARCH_TOML.format(start=world["calendar"][70].isoformat(), params=inline, provider=provider))
    return path


def run_research(world, telemetry, transport, run_ids=None, **params) -> None:
    """One cycle of a fleet of research_analyst alone, as of the world's 71st day."""
    fleet = build_test_fleet({**world, "config": research_config(world, **params)}, telemetry, transport, run_ids=run_ids)
    fleet.run_cycle(world["calendar"][70])
    fleet.shutdown()


def by_start(span_exporter):
    """Every span, in the order it started (the test ids are sequential)."""
    return sorted(span_exporter.get_finished_spans(), key=lambda s: s.context.span_id)
