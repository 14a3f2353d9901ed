"""The notification channels the collector's settings configure, by channel name.

``slack``: an incoming webhook (SLACK_WEBHOOK_URL) or the Web API with a bot
token and channel (SLACK_BOT_TOKEN + SLACK_CHANNEL). ``email``: SMTP
(SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD, SMTP_FROM, SMTP_TO,
SMTP_SECURITY). Rules name these channels; a rule naming a channel that is not
configured has its notifications recorded as failed, with the reason.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from collector.alerting.abc import Notifier
from collector.alerting.notifiers import SlackNotifier, SmtpNotifier, SmtpSecurity

if TYPE_CHECKING:
    from collector.settings import CollectorSettings

logger = logging.getLogger(__name__)

SLACK = "slack"
EMAIL = "email"


def notifiers_from_settings(settings: CollectorSettings) -> dict[str, Notifier]:
    """One notifier per configured channel; none when nothing is configured."""
    notifiers: dict[str, Notifier] = {}
    if settings.slack_webhook_url:
        notifiers[SLACK] = SlackNotifier(webhook_url=settings.slack_webhook_url)
    elif settings.slack_bot_token:
        notifiers[SLACK] = SlackNotifier(
            token=settings.slack_bot_token,
            channel=settings.slack_channel,
            base_url=settings.slack_api_url,
        )
    if settings.smtp_host and settings.smtp_from:
        security = cast(SmtpSecurity, settings.smtp_security)
        notifiers[EMAIL] = SmtpNotifier(
            host=settings.smtp_host,
            port=settings.smtp_port or (465 if security == "ssl" else 587),
            sender=settings.smtp_from,
            recipients=settings.smtp_to,
            security=security,
            username=settings.smtp_user,
            password=settings.smtp_password,
        )
    # repr() of a notifier never shows a token, webhook secret or password.
    logger.info("notification channels: %s", ", ".join(map(repr, notifiers.values())) or "none")
    return notifiers
