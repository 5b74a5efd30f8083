"""The seam to a ClickHouse server: run one SQL statement, get its rows.

``ClickHouse`` is the interface (one method); ``HttpClickHouse`` speaks ClickHouse's HTTP interface
(port 8123) with the standard library. Tests put an in-process engine (chDB) behind the same interface.

Reads no environment variables (``__main__`` passes the URL, user and password in).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol

MAX_ERROR_CHARS = 500


class ClickHouseError(RuntimeError):
    """The server refused the query or could not be reached; the message says which, in one line."""


class ClickHouse(Protocol):
    def rows(self, sql: str) -> list[dict[str, Any]]:
        """The result of ``sql`` (a SELECT without a FORMAT clause), one dict per row."""
        ...


class HttpClickHouse:
    """ClickHouse's HTTP interface: the query in a POST body, rows back as ``JSONEachRow``.

    The password goes in the ``X-ClickHouse-Key`` header, never in the URL (which error messages
    quote)."""

    def __init__(self, url: str, user: str = "default", password: str = "", timeout: float = 300.0) -> None:
        self.url = url.rstrip("/") + "/"
        self.user = user
        self._password = password
        self.timeout = timeout

    def rows(self, sql: str) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode(
            # numbers as JSON numbers; readonly=2: read-only, but these settings may be set
            {"default_format": "JSONEachRow", "output_format_json_quote_64bit_integers": "0", "readonly": "2"}
        )
        request = urllib.request.Request(
            f"{self.url}?{params}",
            data=sql.encode("utf-8"),
            method="POST",
            headers={"X-ClickHouse-User": self.user, "X-ClickHouse-Key": self._password, "Content-Type": "text/plain; charset=utf-8"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            detail = " ".join(exc.read().decode("utf-8", "replace").split())[:MAX_ERROR_CHARS]
            raise ClickHouseError(f"ClickHouse at {self.url} refused the query (HTTP {exc.code}): {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClickHouseError(f"cannot reach ClickHouse at {self.url}: {reason}") from None
        return [json.loads(line) for line in body.splitlines() if line.strip()]
