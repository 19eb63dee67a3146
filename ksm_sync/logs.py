"""Logging through loguru: readable text on a terminal, one JSON object per line for pipelines."""

from __future__ import annotations

import json
import sys
from typing import Any

from loguru import logger

LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
}
TEXT_FORMAT = "<green>{time:YYYY-MM-DDTHH:mm:ss.SSSZ}</green> <level>{level: <7}</level> {message}"


def _json_sink(message: Any) -> None:
    record = message.record
    line = {
        "time": record["time"].isoformat(),
        "level": record["level"].name.lower(),
        "message": record["message"],
        **{
            k: v if isinstance(v, (str, int, float, bool)) else str(v)
            for k, v in record["extra"].items()
        },
    }
    if record["exception"] is not None:
        line["exception"] = str(record["exception"].value)
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()


def configure(level: str, fmt: str) -> None:
    logger.remove()
    if fmt == "json":
        logger.add(_json_sink, level=LEVELS[level], format="{message}")
    else:
        logger.add(sys.stderr, level=LEVELS[level], format=TEXT_FORMAT, colorize=None)
