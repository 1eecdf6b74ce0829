"""Log output: `text` (one `time level logger message` line) or `json` (`--log-format json`: one JSON
object per line).

Our log calls are written `logger.info("event key=%s key=%d", a, b)`. The JSON formatter reads the
fields from that template and its arguments (`{"event": "event", "key": a, "key2": b}`), so a log call
costs nothing more in either format, and the text line stays as it was. An argument that is itself
`" key=value"` (an optional tail, as the request line's error) becomes that field.
"""

from __future__ import annotations

import datetime
import logging
import re
import sys
from typing import Any, Literal

import orjson

__all__ = ["TEXT_FORMAT", "JsonFormatter", "LogFormat", "configure_logging", "fields_of", "use_format"]

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_EVENT = re.compile(r"^([a-z][a-z0-9_]*)(?:\s|$)")
# a printf conversion, and the `key=` just before it (if any)
_SPEC = re.compile(r"(?:(\w+)=)?%[-#0 +]*(?:\d+|\*)?(?:\.\d+)?[hlL]?[diouxXeEfFgGcrsa%]")
_TAIL = re.compile(r"^\s*(\w+)=(.*)$", re.DOTALL)
# uvicorn's and our loggers: where `use_format` swaps the formatter
_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The `event` and `key=value` fields of a record whose template is `event key=%s ...`."""
    template = record.msg if isinstance(record.msg, str) else str(record.msg)
    fields: dict[str, Any] = {}
    m = _EVENT.match(template)
    if m and "=" not in m.group(1):
        fields["event"] = m.group(1)
    args = record.args if isinstance(record.args, tuple) else ()
    i = 0
    for spec in _SPEC.finditer(template):
        if spec.group(0).endswith("%%"):
            continue
        if i >= len(args):
            break
        value = args[i]
        i += 1
        key = spec.group(1)
        if key:
            fields[key] = _jsonable(value)
        elif isinstance(value, str) and (tail := _TAIL.match(value)):
            raw = tail.group(2)
            fields[tail.group(1)] = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" else raw
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        try:
            fields = fields_of(record)
        except Exception:  # a log line never fails because of its shape
            fields = {}
        for key, value in fields.items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def _formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def use_format(fmt: LogFormat) -> None:
    """Every handler of the root and uvicorn's loggers writes `fmt` (uvicorn installs its own handlers
    after ours: called again once it has)."""
    if fmt != "json":
        return
    formatter = _formatter(fmt)
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)


def configure_logging(level: str, fmt: LogFormat = "text") -> None:
    """The root logger at `level`, to stderr, in `fmt` (no-op for the handler if one is configured)."""
    logging.basicConfig(level=level.upper(), format=TEXT_FORMAT, stream=sys.stderr)
    use_format(fmt)
