"""Agents see no data past their as-of date and return signals in the seed's schema; market data,
fleet config and price table reject bad input with a clear message."""

from __future__ import annotations

import importlib
import json
from datetime import date

import pytest

from agents import ensemble, mean_reversion, momentum
from agents.base import AgentContext, check_params
from alpha.emit import signal_attributes
from otel import semconv
from services.config_error import ConfigError
from services.fleet_config import AgentSpec, load_agent, load_fleet_config, parse_fleet_config
from services.market_data import CsvMarketData
from services.pricing import PriceTable
from services.signal_book import RecentSignals
from tests.fleet_fixtures import write_fleet, write_market


@pytest.fixture
def market(tmp_path):
    calendar = write_market(tmp_path / "data")
    return CsvMarketData(tmp_path / "data"), calendar


def test_market_data_never_returns_bars_after_as_of(market):
    data, calendar = market
    bars = data.closes("SPX", calendar[40], lookback=1000)
    assert len(bars) == 41 and bars[-1].day == calendar[40]
    weekend = date(2018, 1, 6)  # a Saturday: the Friday close is the latest
    assert data.closes("SPX", weekend, 1)[0].day == date(2018, 1, 5)
    assert data.closes("SPX", date(2017, 12, 1), 5) == []
    assert data.trading_days("SPX", calendar[88]) == calendar[88:]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("day,price\n2018-01-01,1\n", "expected a header"),
        ("date,close\n2018-01-02,abc\n", "bad date or close"),
        ("date,close\n2018-01-02,-5\n", "close must be a positive number"),
        ("date,close\n2018-01-03,1\n2018-01-02,1\n", "strictly ascending"),
    ],
)
def test_bad_market_csv_names_file_and_line(tmp_path, content, message):
    (tmp_path / "BAD.csv").write_text(content)
    with pytest.raises(ConfigError, match=message):
        CsvMarketData(tmp_path).closes("BAD", date(2019, 1, 1), 5)


def test_missing_symbol_and_folder_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        CsvMarketData(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no market data for 'XYZ'"):
        CsvMarketData(tmp_path).closes("XYZ", date(2019, 1, 1), 5)


@pytest.mark.parametrize("symbol", ["../secret", "../x", "A/../A", "./A", "A/", "", ".", "..", "a", "A.csv", "/abs/A", "\\A", "A\x00"])
def test_market_data_loads_only_the_symbols_its_folder_lists(tmp_path, symbol):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "A.csv").write_text("date,close\n2018-01-02,10\n2018-01-03,11\n")
    (tmp_path / "secret.csv").write_text("date,close\n2018-01-02,1\n")  # one level up: never read
    data = CsvMarketData(folder)
    for name in (symbol, str(folder / "A"), str(tmp_path / "secret")):
        with pytest.raises(ConfigError, match="no market data for"):
            data.closes(name, date(2019, 1, 1), 5)
        with pytest.raises(ConfigError, match="no market data for"):
            data.trading_days(name, date(2018, 1, 1))
    assert [bar.close for bar in data.closes("A", date(2019, 1, 1), 5)] == [10.0, 11.0]
    assert data.symbols() == ["A"]


@pytest.mark.parametrize("module", [momentum, mean_reversion, ensemble])
def test_quant_agents_return_valid_signals_as_of_the_day(market, module):
    data, calendar = market
    book = RecentSignals()  # the ensemble combines what its members recorded for the day
    context = AgentContext(as_of=calendar[80], market=data, universe=("SPX", "WTI"), params={"horizon": 10}, signals=book)
    for member in (momentum, mean_reversion):
        book.record(member.Agent.name, member.Agent().run(context))
    signals = module.Agent().run(context)
    assert [s["symbol"] for s in signals] == ["SPX", "WTI"]
    for item in signals:
        attributes = signal_attributes(item)  # raises if invalid
        assert attributes[semconv.ALPHA_AS_OF] == calendar[80].isoformat() and attributes[semconv.ALPHA_HORIZON] == 10
    assert module.Agent().run(context) == signals  # deterministic


def test_momentum_follows_the_drift(market):
    data, calendar = market
    by_symbol = {s["symbol"]: s for s in momentum.Agent().run(AgentContext(calendar[80], data, ("SPX", "WTI")))}
    assert by_symbol["SPX"]["direction"] == "up" and by_symbol["SPX"]["prob_up"] > 0.5
    assert by_symbol["WTI"]["direction"] == "down" and by_symbol["WTI"]["prob_up"] < 0.5


def test_too_little_history_gives_no_signal_not_an_error(market):
    data, calendar = market
    assert momentum.Agent().run(AgentContext(calendar[10], data, ("SPX",))) == []


def test_shipped_fleet_config_loads_every_agent():
    fleet = load_fleet_config()
    assert {"momentum", "mean_reversion", "llm_analyst", "ensemble"} <= set(fleet.agents)
    for spec in fleet.agents.values():
        assert load_agent(spec).name == spec.name


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"fleet": {"universe": []}}, "fleet.universe must be a non-empty list"),
        ({"fleet": {"universe": ["SPX"]}, "agents": {"a b": {}}}, "agent name 'a b'"),
        ({"fleet": {"universe": ["SPX"]}, "agents": {"m": {"interval_seconds": 0}}}, "interval_seconds must be a positive"),
        ({"fleet": {"universe": ["SPX"]}, "agents": {"m": {"enabled": False}}}, "no enabled agent"),
        ({"fleet": {"universe": ["SPX"]}, "replay": {"start": "soon"}, "agents": {"m": {}}}, "replay.start must be an ISO date"),
        ({"fleet": {"universe": ["SPX"], "max_workers": 0}, "agents": {"m": {}}}, "fleet.max_workers must be a positive"),
    ],
)
def test_bad_fleet_config_is_a_clear_error(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_fleet_config(raw)


@pytest.mark.parametrize("capital", [0, -5, True, "1e6", float("nan"), float("inf")])
def test_bad_capital_is_a_config_error_naming_the_key(capital):
    raw = {"fleet": {"universe": ["SPX"]}, "agents": {"m": {"capital_usd": capital}}}
    with pytest.raises(ConfigError, match=r"f\.toml: agents\.m\.capital_usd must be a positive number of US dollars"):
        parse_fleet_config(raw, source="f.toml")


def test_capital_defaults_and_is_read_per_agent():
    from services.fleet_config import DEFAULT_CAPITAL_USD

    fleet = parse_fleet_config({"fleet": {"universe": ["SPX"]}, "agents": {"m": {}, "n": {"capital_usd": 250_000}}})
    assert fleet.agents["m"].capital_usd == DEFAULT_CAPITAL_USD == 1_000_000.0
    assert fleet.agents["n"].capital_usd == 250_000.0


def test_unknown_agent_module_is_a_clear_error(tmp_path):
    fleet = load_fleet_config(write_fleet(tmp_path / "agents.toml", date(2018, 3, 1)))
    spec = fleet.agents["momentum"]
    with pytest.raises(ConfigError, match=r"cannot import module 'agents\.nope'"):
        load_agent(type(spec)("x", "agents.nope", 1.0))


def test_price_table_prices_cached_tokens_and_dated_snapshots(tmp_path, monkeypatch):
    table = PriceTable.load()
    assert table.cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert table.cost("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000, cached_input_tokens=400_000) == pytest.approx(
        0.6 * 0.15 + 0.4 * 0.075 + 0.60
    )
    assert table.cost("no-such-model", 10, 10) is None
    own = tmp_path / "prices.json"
    own.write_text(json.dumps({"version": "2026-11-01", "models": {"house-model": {"input": 1, "output": 2}}}))
    monkeypatch.setenv("ALPHATRACE_PRICE_TABLE", str(own))
    overridden = PriceTable.load()
    assert overridden.version == "2026-11-01"
    assert overridden.cost("house-model", 1_000_000, 0, cached_input_tokens=1_000_000) == pytest.approx(1.0)
    assert overridden.cost("gpt-4o-mini", 1, 1) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"models": {}}, "'version'"),
        ({"version": "x", "models": {"m": {"input": -1, "output": 1}}}, "non-negative number for 'input'"),
        ({"version": "x", "models": {"m": {"input": 1}}}, "non-negative number for 'output'"),
        ([], "expected an object"),
    ],
)
def test_bad_price_table_is_a_clear_error(raw, message):
    with pytest.raises(ConfigError, match=message):
        PriceTable.from_dict(raw)


# --- issue 15: typos are errors with "did you mean", agents check their own parameters -------------

BASE = {"fleet": {"universe": ["SPX"]}, "agents": {"m": {}}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**BASE, "flet": {}}, r"unknown table 'flet'; did you mean 'fleet'\? Known: agents, fleet, llm, replay"),
        ({**BASE, "fleet": {"universe": ["SPX"], "max_worker": 2}}, r"\[fleet\]: unknown key 'max_worker'; did you mean 'max_workers'\?"),
        ({**BASE, "replay": {"cycle": 5}}, r"\[replay\]: unknown key 'cycle'; did you mean 'cycles'\?"),
        ({**BASE, "llm": {"modle": "x"}}, r"\[llm\]: unknown key 'modle'; did you mean 'model'\?"),
        (
            {**BASE, "agents": {"m": {"intervall_seconds": 60}}},
            r"\[agents\.m\]: unknown key 'intervall_seconds'; did you mean 'interval_seconds'\?",
        ),
        (
            {**BASE, "agents": {"m": {"zzz": 1}}},
            r"\[agents\.m\]: unknown key 'zzz'; known: budget, capital_usd, enabled, interval_seconds, module, params, shard, status",
        ),
    ],
)
def test_unknown_keys_in_the_fleet_config_are_errors_with_a_suggestion(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_fleet_config(raw, source="f.toml")


@pytest.mark.parametrize(
    ("module", "params", "message"),
    [
        ("agents.momentum", {"horizn": 5}, r"f\.toml: agents\.a\.params: unknown parameter 'horizn'; did you mean 'horizon'\?"),
        ("agents.momentum", {"horizon": 2.5}, r"agents\.a\.params\.horizon = 2\.5: must be a whole number >= 1 and <= 250 \(default 5\)"),
        ("agents.momentum", {"scale": 0}, r"agents\.a\.params\.scale = 0: must be a number > 0 \(default 0\.08\)"),
        ("agents.mean_reversion", {"entry_z": "2"}, r"agents\.a\.params\.entry_z = '2': must be a number > 0"),
        ("agents.llm_analyst", {"horizon": True}, r"agents\.a\.params\.horizon = True: must be a whole number"),
        ("agents.ensemble", {"weights": {"momentum": -1}}, r"params\.weights\.momentum = -1: must be .*>= 0"),
        ("agents.ensemble", {"weights": 0.5}, r"params\.weights = 0\.5: must be a table of numbers"),
    ],
)
def test_an_agent_checks_its_parameters_when_it_is_loaded(module, params, message):
    with pytest.raises(ConfigError, match=message):
        load_agent(AgentSpec("a", module, 60.0, params), source="f.toml")


def test_params_for_an_agent_that_declares_none_are_an_error(tmp_path, monkeypatch):
    (tmp_path / "undeclared_agent.py").write_text("class Agent:\n    def run(self, context):\n        return []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_agent(AgentSpec("a", "undeclared_agent", 60.0)).name == "a"
    with pytest.raises(ConfigError, match=r"agents\.a\.params = \{'x': 1\}: module 'undeclared_agent' declares no PARAMS"):
        load_agent(AgentSpec("a", "undeclared_agent", 60.0, {"x": 1}))


def test_the_shipped_parameters_are_valid_and_defaults_come_from_the_declaration(market):
    for spec in load_fleet_config().agents.values():
        module = importlib.import_module(spec.module)
        assert check_params(module.PARAMS, spec.params, spec.name).keys() == module.PARAMS.keys()
    data, calendar = market
    context = AgentContext(as_of=calendar[80], market=data, universe=("SPX",), params={"horizon": 10})
    assert context.values(momentum.PARAMS) == {"horizon": 10, "scale": 0.08}
    assert check_params(momentum.PARAMS, {"scale": 1}, "w") == {"horizon": 5, "scale": 1.0}
