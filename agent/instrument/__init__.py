"""Middleware for the dealer's app: measures every API request and hands it to the agent.

    from agent.instrument import DealerPulseASGIMiddleware
    app = DealerPulseASGIMiddleware(app)           # Starlette, FastAPI, any ASGI app

    from agent.instrument import DealerPulseWSGIMiddleware
    app.wsgi_app = DealerPulseWSGIMiddleware(app.wsgi_app)   # Flask, any WSGI app

Records go to the agent's intake at $DEALERPULSE_INTAKE (default
/run/dealerpulse/intake.sock). Nothing here can slow down or break the app:
records are queued without blocking and sent by a background thread, and an
absent agent only means the records are dropped (and counted).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.aggregate import RequestRecord
    from agent.instrument.asgi import DealerPulseASGIMiddleware
    from agent.instrument.sink import DisabledSink, RecordSink, Sink, SinkStats, default_sink
    from agent.instrument.wsgi import DealerPulseWSGIMiddleware

__all__ = [
    "DealerPulseASGIMiddleware",
    "DealerPulseWSGIMiddleware",
    "DisabledSink",
    "RecordSink",
    "RequestRecord",
    "Sink",
    "SinkStats",
    "default_sink",
]

# Loaded on first use (PEP 562): the agent itself imports only
# agent.instrument.wire (the intake's protocol), and the middleware modules
# would cost its process memory for nothing.
_HOMES = {
    "DealerPulseASGIMiddleware": "agent.instrument.asgi",
    "DealerPulseWSGIMiddleware": "agent.instrument.wsgi",
    "DisabledSink": "agent.instrument.sink",
    "RecordSink": "agent.instrument.sink",
    "RequestRecord": "agent.aggregate",
    "Sink": "agent.instrument.sink",
    "SinkStats": "agent.instrument.sink",
    "default_sink": "agent.instrument.sink",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value
