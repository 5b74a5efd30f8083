"""The hand-written span shapes of other instrumentations (``tests/fixtures/genai/*.jsonl``): one file
per producer, each in the collector file exporter's format (one OTLP/JSON ExportTraceServiceRequest
per line) after a header of ``#`` comment lines that cite the conventions it follows. ``lines`` drops
the header; ``write`` puts the collector-format lines in a file the readers can read."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).parent / "fixtures" / "genai"
FIXTURES = ("genai_tool_calling", "util_genai", "openllmetry", "openinference")
ALPHATRACE_FIXTURES = ("alphatrace_stops",)  # alphatrace's own spans (tests/test_report_run_steps.py)


def lines(name: str) -> list[str]:
    """The fixture's request lines (newline-terminated), without its comment header."""
    text = (FOLDER / f"{name}.jsonl").read_text(encoding="utf-8")
    return [line for line in text.splitlines(keepends=True) if line.strip() and not line.startswith("#")]


def header(name: str) -> str:
    text = (FOLDER / f"{name}.jsonl").read_text(encoding="utf-8")
    return "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))


def write(folder: Path, *names: str, file_name: str = "traces.jsonl") -> Path:
    """The fixtures' lines, in the order named, as one trace file in ``folder``."""
    path = folder / file_name
    path.write_text("".join(line for name in names for line in lines(name)), encoding="utf-8")
    return path
