"""The services agents run on: run wrapper, LLM analysis, kill switch, market data, clock, config."""
