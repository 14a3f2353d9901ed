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
