"""Error reporting to Sentry, only when ``SENTRY_DSN`` is set.

Without a DSN nothing of sentry-sdk is imported (it is an optional extra,
``dealerpulse[sentry]``). With one, unhandled exceptions (the excepthook),
ERROR log records with their exceptions, and what the HTTP gateway reports
through :func:`report_exception` become Sentry events. Integrations are
chosen explicitly, not auto-enabled, so that no third-party framework is
patched behind our back; personal data is not sent (the default) and Sentry's scrubber
removes authorization headers and tokens from what is.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

logger = logging.getLogger(__name__)

DSN_ENV = "SENTRY_DSN"
ENVIRONMENT_ENV = "SENTRY_ENVIRONMENT"


class SentryError(Exception):
    """SENTRY_DSN is set but Sentry cannot be used (sentry-sdk missing, bad DSN)."""


def init_sentry(env: Mapping[str, str], component: str, release: str = "") -> bool:
    """Start reporting to Sentry when ``SENTRY_DSN`` is set; True when it was started."""
    dsn = env.get(DSN_ENV, "").strip()
    if not dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.atexit import AtexitIntegration
        from sentry_sdk.integrations.dedupe import DedupeIntegration
        from sentry_sdk.integrations.excepthook import ExcepthookIntegration
        from sentry_sdk.integrations.logging import LoggingIntegration
    except ImportError as exc:
        raise SentryError(
            f"{DSN_ENV} is set but sentry-sdk is not installed: pip install 'dealerpulse[sentry]'"
        ) from exc
    try:
        sentry_sdk.init(
            dsn=dsn,
            environment=env.get(ENVIRONMENT_ENV) or None,
            release=release or None,
            default_integrations=False,
            auto_enabling_integrations=False,
            integrations=[
                AtexitIntegration(),
                DedupeIntegration(),
                ExcepthookIntegration(),
                LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
            ],
        )
    except Exception as exc:  # sentry-sdk refuses a malformed DSN with its own error types
        raise SentryError(f"{DSN_ENV}: {exc}") from None
    sentry_sdk.set_tag("component", component)
    logger.info("reporting errors to Sentry (%s)", component)
    return True


def report_exception(exc: BaseException) -> None:
    """Send ``exc`` to Sentry if it was started; a no-op (and no import) otherwise."""
    module = sys.modules.get("sentry_sdk")
    if module is None or not module.is_initialized():
        return
    module.capture_exception(exc)
