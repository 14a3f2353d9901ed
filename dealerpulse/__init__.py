"""DealerPulse: performance monitoring for DealershipAI dealer servers.

This package holds what every part shares and nothing that needs more than
the agent's dependencies: the data model, the clock, tokens, configuration,
the generated protobuf stubs (``dealerpulse.v1``) and the ``dealerpulse`` CLI.
"""

__version__ = "0.1.0"
