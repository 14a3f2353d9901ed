"""Start-up steps that keep the ``dealerpulse agent`` process small.

The budget (issue 2) is under 40 MiB peak RSS for the whole agent process.
Measured on Linux/CPython 3.11, ``import grpc`` alone costs about 17 MiB
(mostly the code pages of its C core, which count in RSS) and also imports
asyncio, which tries ``import ssl``. The standard library's ssl module loads
libssl and libcrypto (about 4.5 MiB resident with their Python objects), yet
the agent never uses it: gRPC brings its own TLS (BoringSSL, linked into
grpc's C core), so TLS and mutual TLS to the collector are unaffected.

:func:`import_grpc_without_stdlib_ssl` therefore imports asyncio and grpc
while ``ssl`` is unavailable: asyncio was written for Pythons built without
ssl and simply records that it has none (``asyncio``'s own TLS, which the
agent does not use, is then unavailable in this process). ssl becomes
importable again right after, so what needs it later still gets it, e.g.
HTTPS probes, which import ``http.client`` only when probes are configured.

Only the agent's own command calls this, before anything imports asyncio;
processes that host other parts (``dealerpulse up``, tests) never do.
"""

from __future__ import annotations

import importlib
import logging
import sys

logger = logging.getLogger(__name__)

# Modules whose import pulls in ssl but that work without it (try/except).
_IMPORTED_WITHOUT_SSL = ("asyncio", "grpc")


def import_grpc_without_stdlib_ssl() -> bool:
    """Import asyncio and grpc with ssl unavailable; False if it was too late for that.

    Too late means ssl or one of those modules was already imported: then
    nothing changes (and nothing breaks), the process is just larger.
    """
    already = [name for name in ("ssl", *_IMPORTED_WITHOUT_SSL) if name in sys.modules]
    if already:
        logger.debug("%s already imported; the standard ssl module stays loaded", already)
        return False
    # None in sys.modules makes `import ssl` raise ImportError (the documented way).
    sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        for name in _IMPORTED_WITHOUT_SSL:
            importlib.import_module(name)
    finally:
        if sys.modules.get("ssl", False) is None:
            del sys.modules["ssl"]
    return True
