"""Rendering outbox payloads: Jinja2 templates for email, one line of text for chat."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES_DIR = Path(__file__).parent / "templates"
DEFAULT_TEMPLATE = "performance-alert"

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)

_HEADLINES = {
    "firing": "FIRING",
    "resolved": "RESOLVED",
    "severity_change": "SEVERITY CHANGED",
    "escalation": "ESCALATED",
    "repeat": "STILL FIRING",
    "flapping": "FLAPPING (further changes muted until it settles)",
}
GROUP_KIND = "group"
_COLOURS = {"critical": "#c0392b", "warning": "#d68910"}


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


def headline(payload: Mapping[str, Any]) -> str:
    """'[FIRING] critical: cpu hot on acme-motors/agent-1 (97.2 > 95)'."""
    if payload.get("kind") == GROUP_KIND:
        return f"[{payload.get('count')} ALERTS] dealer {payload.get('dealer_id') or '-'}"
    state = _HEADLINES.get(str(payload.get("kind")), str(payload.get("kind")).upper())
    if payload.get("manual"):
        state += " BY HAND"
    severity = f" {payload['severity']}" if payload.get("severity") else ""
    if payload.get("dealer_id") is None and payload.get("agent_id") is None:
        # An alert about DealerPulse itself (a failing channel): no dealer, no figures.
        labels = payload.get("labels") or {}
        where = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "dealerpulse"
        return f"[{state}]{severity}: {payload.get('rule')} on {where}"
    where = f"{payload.get('dealer_id')}/{payload.get('agent_id')}"
    figures = f"{_number(payload.get('value'))} {payload.get('comparator')} "
    figures += _number(payload.get("threshold"))
    return f"[{state}]{severity}: {payload.get('rule')} on {where} ({figures})"


def group_lines(payload: Mapping[str, Any]) -> list[str]:
    """One line per alert of a group message."""
    return [headline(alert) for alert in payload.get("alerts") or []]


def render(payload: Mapping[str, Any], key: str, template: str = DEFAULT_TEMPLATE) -> Rendered:
    context = {
        "p": payload,
        "key": key,
        "headline": headline(payload),
        "value": _number(payload.get("value")),
        "threshold": _number(payload.get("threshold")),
        "colour": _COLOURS.get(str(payload.get("severity")), "#1e8449"),
    }
    if payload.get("kind") == GROUP_KIND:
        template = f"{template}-group"
        context["lines"] = group_lines(payload)
    return Rendered(
        subject=headline(payload),
        text=_environment.get_template(f"{template}.txt.j2").render(context),
        html=_environment.get_template(f"{template}.html.j2").render(context),
    )


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
