"""Follow-up notification settings: repeat, escalation, grouping.

Dependency-free on purpose: the collector's option list imports it, and
`dealerpulse --help` must not need the server's packages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dealerpulse.config import Option, non_negative_float, positive_float


def channel_names(value: Any) -> tuple[str, ...]:
    """'pager, email' or a TOML list -> ('pager', 'email')."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    if len(set(names)) != len(names):
        raise ValueError(f"names a channel twice: {list(names)}")
    return names


NOTIFICATION_OPTIONS = (
    Option(
        "alert_repeat_interval_s",
        positive_float,
        4 * 3600.0,
        "seconds between reminders of a critical alert still firing",
        env=("ALERT_REPEAT_INTERVAL_S",),
    ),
    Option(
        "alert_escalate_after_s",
        positive_float,
        1800.0,
        "seconds after which an unacknowledged critical alert goes to the escalation channels",
        env=("ALERT_ESCALATE_AFTER_S",),
    ),
    Option(
        "alert_escalation_channels",
        channel_names,
        (),
        "channels (comma-separated names) that unacknowledged critical alerts escalate to",
        env=("ALERT_ESCALATION_CHANNELS",),
    ),
    Option(
        "alert_group_wait_s",
        non_negative_float,
        30.0,
        "seconds a dealer's first notification waits for others to go out as one message",
        env=("ALERT_GROUP_WAIT_S",),
    ),
)


@dataclass(frozen=True, slots=True)
class FollowUpPolicy:
    repeat_interval_s: float = 4 * 3600.0
    escalate_after_s: float = 1800.0
    escalation_channels: tuple[str, ...] = ()

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> FollowUpPolicy:
        """From resolved :data:`NOTIFICATION_OPTIONS` values (missing keys keep defaults)."""
        default = cls()
        return cls(
            repeat_interval_s=float(
                values.get("alert_repeat_interval_s", default.repeat_interval_s)
            ),
            escalate_after_s=float(values.get("alert_escalate_after_s", default.escalate_after_s)),
            escalation_channels=tuple(values.get("alert_escalation_channels", ())),
        )
