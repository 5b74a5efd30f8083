"""The trading-signal agents: one module each, listed with their schedule in ``agents/agents.toml``."""
