"""A blocking client of the Alerts gRPC service, in plain dicts (JSON-ready).

The protobuf edge of ``dealerpulse alerts``: requests are built and answers
turned into dicts of JSON values here (times as ISO 8601 UTC, ids as ints),
so the CLI neither touches ``*_pb2`` objects nor sees int64-as-string JSON.
A refused call raises :class:`AlertsCallError` with the gRPC status name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from collector.alerting.errors import AlertingError
from dealerpulse.clock import from_unix_ms, to_unix_ms
from dealerpulse.rpc_client import call_unary, open_channel
from dealerpulse.tls import ClientTls, channel_credentials
from dealerpulse.v1 import alerts_pb2 as pb
from dealerpulse.v1 import alerts_pb2_grpc

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 15.0
THRESHOLD_NAMES = ("warning", "critical", "warning_recovery", "critical_recovery")
Row = dict[str, Any]


class AlertsCallError(AlertingError):
    """The collector refused a call or could not be reached."""

    def __init__(self, status: str, details: str) -> None:
        super().__init__(f"{status}: {details}")
        self.status, self.details = status, details


@dataclass(frozen=True, slots=True)
class RuleChanges:
    """What ``rule-update`` changes; None leaves the stored value."""

    enabled: bool | None = None
    thresholds: Mapping[str, float] | None = None
    channels: Sequence[str] | None = None


@contextmanager
def connect(address: str, token: str, tls: ClientTls | None = None) -> Iterator[AlertsClient]:
    """A client on a new channel (TLS when ``tls`` is given; mutual TLS with its cert).

    Raises :class:`dealerpulse.tls.TlsError` naming a bad TLS file.
    """
    channel = open_channel(address, None if tls is None else channel_credentials(tls))
    try:
        yield AlertsClient(alerts_pb2_grpc.AlertsStub(channel), token)  # type: ignore[no-untyped-call]
    finally:
        channel.close()


class AlertsClient:
    def __init__(self, stub: alerts_pb2_grpc.AlertsStub, token: str) -> None:
        self._stub, self._token = stub, token

    def _call(self, method: str, request: Any) -> Any:
        return call_unary(self._stub, method, request, self._token, CALL_TIMEOUT_S, AlertsCallError)

    # ---- rules

    def list_rules(self, dealer_id: str | None = None) -> list[Row]:
        answer = self._call("ListRules", pb.ListRulesRequest(dealer_id=dealer_id or ""))
        return [rule_row(rule) for rule in answer.rules]

    def get_rule(self, rule_id: int) -> Row:
        return rule_row(self._call("GetRule", pb.GetRuleRequest(id=rule_id)))

    def create_rule(self, spec: Mapping[str, Any]) -> Row:
        """``spec``: the keys of :func:`rule_row` (id, builtin ignored)."""
        return rule_row(self._call("CreateRule", pb.CreateRuleRequest(rule=_rule_message(spec))))

    def update_rule(self, rule_id: int, changes: RuleChanges) -> Row:
        stored = self._call("GetRule", pb.GetRuleRequest(id=rule_id))
        if changes.enabled is not None:
            stored.enabled = changes.enabled
        for name, value in (changes.thresholds or {}).items():
            setattr(stored.thresholds, name, value)
        if changes.channels is not None:
            del stored.channels[:]
            stored.channels.extend(changes.channels)
        return rule_row(self._call("UpdateRule", pb.UpdateRuleRequest(rule=stored)))

    def delete_rule(self, rule_id: int) -> None:
        self._call("DeleteRule", pb.DeleteRuleRequest(id=rule_id))

    # ---- alerts

    def list_alerts(
        self,
        dealer_id: str | None = None,
        state: str | None = None,
        severity: str | None = None,
        since: datetime | None = None,
        limit: int = 0,
    ) -> list[Row]:
        request = pb.ListAlertsRequest(
            dealer_id=dealer_id or "",
            state=state or "",
            severity=severity or "",
            since_unix_ms=0 if since is None else to_unix_ms(since),
            limit=limit,
        )
        return [alert_row(alert) for alert in self._call("ListAlerts", request).alerts]

    def acknowledge(self, alert_id: int, by: str = "") -> Row:
        request = pb.AcknowledgeAlertRequest(id=alert_id, by=by)
        return alert_row(self._call("AcknowledgeAlert", request))

    def resolve(self, alert_id: int) -> Row:
        return alert_row(self._call("ResolveAlert", pb.ResolveAlertRequest(id=alert_id)))

    # ---- silences

    def add_silence(
        self,
        starts: datetime,
        ends: datetime,
        dealer_id: str | None = None,
        rule_id: int | None = None,
        labels: Mapping[str, str] | None = None,
        comment: str = "",
    ) -> Row:
        silence = pb.Silence(
            dealer_id=dealer_id or "",
            rule_id=rule_id or 0,
            label_matchers=dict(labels or {}),
            starts_unix_ms=to_unix_ms(starts),
            ends_unix_ms=to_unix_ms(ends),
            comment=comment,
        )
        return silence_row(self._call("CreateSilence", pb.CreateSilenceRequest(silence=silence)))

    def list_silences(
        self, dealer_id: str | None = None, include_expired: bool = False
    ) -> list[Row]:
        request = pb.ListSilencesRequest(dealer_id=dealer_id or "", include_expired=include_expired)
        return [silence_row(s) for s in self._call("ListSilences", request).silences]

    def delete_silence(self, silence_id: int) -> None:
        self._call("DeleteSilence", pb.DeleteSilenceRequest(id=silence_id))


# ---- messages <-> rows


def _iso(unix_ms: int) -> str | None:
    return from_unix_ms(unix_ms).isoformat() if unix_ms else None


def rule_row(rule: pb.AlertRule) -> Row:
    return {
        "id": rule.id,
        "name": rule.name,
        "kind": rule.kind,
        "alert_type": rule.alert_type,
        "metric": rule.metric,
        "aggregation": rule.aggregation,
        "window_s": rule.window_s,
        "comparator": rule.comparator,
        "thresholds": {
            name: getattr(rule.thresholds, name)
            for name in THRESHOLD_NAMES
            if rule.thresholds.HasField(name)
        },
        "for_s": rule.for_s,
        "dealer_id": rule.dealer_id or None,
        "label_matchers": dict(sorted(rule.label_matchers.items())),
        "channels": list(rule.channels),
        "enabled": rule.enabled,
        "builtin": rule.builtin,
    }


def _rule_message(spec: Mapping[str, Any]) -> pb.AlertRule:
    thresholds = pb.Thresholds(**dict(spec.get("thresholds") or {}))
    return pb.AlertRule(
        name=spec.get("name", ""),
        kind=spec.get("kind") or "",
        alert_type=spec.get("alert_type") or "",
        metric=spec.get("metric") or "",
        aggregation=spec.get("aggregation") or "",
        window_s=int(spec.get("window_s") or 0),
        comparator=spec.get("comparator") or "",
        thresholds=thresholds,
        for_s=int(spec.get("for_s") or 0),
        dealer_id=spec.get("dealer_id") or "",
        label_matchers=dict(spec.get("label_matchers") or {}),
        channels=list(spec.get("channels") or []),
        enabled=bool(spec.get("enabled", True)),
    )


def alert_row(alert: pb.Alert) -> Row:
    return {
        "id": alert.id,
        "dealer_id": alert.dealer_id or None,
        "agent_id": alert.agent_id or None,
        "labels": dict(sorted(alert.labels.items())),
        "rule_id": alert.rule_id or None,
        "type": alert.type,
        "severity": alert.severity,
        "state": alert.state,
        "message": alert.message,
        "value": alert.value if alert.HasField("value") else None,
        "threshold": alert.threshold if alert.HasField("threshold") else None,
        "started": _iso(alert.started_unix_ms),
        "resolved": _iso(alert.resolved_unix_ms),
        "acknowledged_by": alert.acknowledged_by or None,
        "acknowledged": _iso(alert.acknowledged_unix_ms),
    }


def silence_row(silence: pb.Silence) -> Row:
    return {
        "id": silence.id,
        "dealer_id": silence.dealer_id or None,
        "rule_id": silence.rule_id or None,
        "label_matchers": dict(sorted(silence.label_matchers.items())),
        "starts": _iso(silence.starts_unix_ms),
        "ends": _iso(silence.ends_unix_ms),
        "created_by": silence.created_by,
        "comment": silence.comment,
    }
