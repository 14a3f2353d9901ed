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

Before grpc is imported, its DNS resolver is set to ``native`` (getaddrinfo,
as every other program on the host resolves names) unless the environment
already chose one (``GRPC_DNS_RESOLVER``): the default, c-ares, is linked into
grpc's C core and touches about 2 MiB more of its pages (measured with
bench/agent_overhead.py: 43.3 -> 41.3 MiB peak RSS). The agent resolves one
collector address and needs nothing c-ares adds (SRV/TXT lookups).

The same is done for ``shutil``, which argparse imports to size its help
output: shutil loads bz2 and lzma (their C modules and libraries, about
0.3 MiB) for archive formats it only offers if they import, inside
try/except. The agent never makes archives; bz2 and lzma stay importable.

Protobuf's generated modules (``ingest_pb2``) import the pure-Python message
implementation, ``google.protobuf.internal.python_message``, and with it 22
modules (text_format, the pure-Python encoder and decoder, containers, pickle,
calendar...): 1.2 MiB of the agent's peak RSS (37.5 -> 36.3 MiB installed).
With the upb runtime (the default wherever its wheel exists) nothing ever
uses them: message classes come from upb.
:func:`defer_protobuf_python_message` registers that module with the standard
library's :class:`importlib.util.LazyLoader`, which runs it on first use of
one of its attributes; until then it costs one module object. Were something
to need it (the pure-Python runtime, an extension registered at run time), it
loads then and works as usual.

Only the agent's own command calls these, before anything imports asyncio;
processes that host other parts (``dealerpulse up``, tests) never do.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

# Modules whose import pulls in ssl but that work without it (try/except).
_IMPORTED_WITHOUT_SSL = ("asyncio", "grpc")
_RESOLVER_VARIABLE = "GRPC_DNS_RESOLVER"
# shutil works without bz2 and lzma (try/except): it just offers fewer archive formats.
_COMPRESSORS = ("bz2", "lzma")
# Imported by protobuf's descriptor_pool and builder, used only by its pure-Python runtime.
_PROTOBUF_PYTHON_MESSAGE = "google.protobuf.internal.python_message"


def import_grpc_without_stdlib_ssl() -> bool:
    """Import asyncio and grpc with ssl unavailable (and grpc's native DNS
    resolver, shutil without bz2 and lzma); False if it was too late for the ssl part.

    Too late means ssl or one of those modules was already imported: then
    nothing changes (and nothing breaks), the process is just larger.
    """
    if "grpc" not in sys.modules:
        # Read by grpc's C core when it initialises, so set before the import.
        os.environ.setdefault(_RESOLVER_VARIABLE, "native")
    import_shutil_without_compressors()
    return _import_without(("ssl",), _IMPORTED_WITHOUT_SSL)


def import_shutil_without_compressors() -> bool:
    """Import shutil while bz2 and lzma cannot be imported; False if too late.

    Harmless in any process that makes no bz2/xz archives with shutil (none of
    ours does), so the CLI may call it before it knows the command: building
    its first argparse parser imports shutil (argparse sizes help to the
    terminal), which would otherwise come too early for the agent's step.
    """
    return _import_without(_COMPRESSORS, ("shutil",))


def defer_protobuf_python_message() -> bool:
    """Make protobuf's pure-Python message module load on first use; False if
    it was already imported (then nothing changes) or protobuf is missing."""
    name = _PROTOBUF_PYTHON_MESSAGE
    if name in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return False
    if spec is None or spec.loader is None:
        return False
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    # What a normal import does too; setting it does not trigger the load.
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)
    return True


def _import_without(unavailable: tuple[str, ...], modules: tuple[str, ...]) -> bool:
    """Import ``modules`` while ``unavailable`` cannot be imported; False if too late."""
    already = [name for name in (*unavailable, *modules) if name in sys.modules]
    if already:
        logger.debug("%s already imported; %s stay loaded", already, unavailable)
        return False
    # None in sys.modules makes `import ssl` raise ImportError (the documented way).
    for name in unavailable:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        for name in unavailable:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
    return True
