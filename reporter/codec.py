"""Reporter protobuf messages <-> reporter/model.py dataclasses: the only module that knows both.

The messages mirror the dataclasses field by field (same names), so one
reflective encoder and decoder walk both, driven by the dataclasses' type
hints: ``X | None`` is an unset optional field or message, datetimes are
``Timestamp``, timedeltas ``Duration``, enums their string value. Two
fields have no direct protobuf shape and are handled by name: ``host``
(a mapping of tuples) and ``evidence`` (numbers or text).

Requests are decoded with validation: a bad field raises a ``ValueError``
whose message names it (``timeRange``, ``format``), which the service
answers with INVALID_ARGUMENT.

The same messages serve as the JSON form of results in a shared cache
(:func:`to_json` / :func:`from_json`, protobuf's JSON mapping), so nothing
is ever unpickled from the network.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from google.protobuf import json_format
from google.protobuf.message import Message

from dealerpulse.clock import from_unix_ms
from dealerpulse.v1 import reporter_pb2 as pb
from reporter.model import (
    Analytics,
    AnalyticsData,
    Realtime,
    Recommendation,
    ReportFormat,
    ReportRecord,
    ResourceUsage,
    TimeRange,
)

_T = TypeVar("_T")

# What a shared cache holds, by kind: the message that carries it.
KIND_REALTIME = "realtime"
KIND_ANALYTICS = "analytics"
KIND_RECOMMENDATIONS = "recommendations"


class CodecError(ValueError):
    """A message that does not decode into the model; the text names the field."""


# ---- generic walk


def encode_into(value: Any, message: Message) -> Message:
    """Fill ``message`` from the dataclass ``value`` (fields of the same names)."""
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if item is None:
            continue
        if field.name == "host":
            _encode_host(item, message)
        elif field.name == "evidence":
            _encode_evidence(item, message)
        else:
            _encode_field(item, message, field.name)
    return message


def _encode_field(item: Any, message: Message, name: str) -> None:
    if dataclasses.is_dataclass(item):
        encode_into(item, getattr(message, name))
    elif isinstance(item, datetime):
        getattr(message, name).FromDatetime(item)
    elif isinstance(item, timedelta):
        getattr(message, name).FromTimedelta(item)
    elif isinstance(item, Enum):
        setattr(message, name, item.value)
    elif isinstance(item, tuple | list):
        repeated = getattr(message, name)
        for element in item:
            if dataclasses.is_dataclass(element):
                encode_into(element, repeated.add())
            else:
                repeated.append(element)
    elif isinstance(item, Mapping):
        getattr(message, name).update(item)
    else:
        setattr(message, name, item)


def _encode_host(host: Mapping[str, tuple[ResourceUsage, ...]], message: Message) -> None:
    for name, usages in host.items():
        entry = cast(pb.AnalyticsData, message).host.add(name=name)
        for usage in usages:
            encode_into(usage, entry.usages.add())


def _encode_evidence(evidence: Mapping[str, float | str], message: Message) -> None:
    target = cast(pb.Recommendation, message).evidence
    for key, item in evidence.items():
        if isinstance(item, str):
            target[key].text = item
        else:
            target[key].number = float(item)


def decode(kind: type[_T], message: Message) -> _T:
    """The dataclass ``kind`` from ``message``."""
    values: dict[str, Any] = {}
    for name, (hint, optional) in _hints(cast(type, kind)).items():
        if name == "host":
            values[name] = _decode_host(message)
        elif name == "evidence":
            values[name] = _decode_evidence(message)
        elif optional and not _present(message, name):
            values[name] = None
        else:
            values[name] = _decode_field(hint, getattr(message, name), name)
    return kind(**values)


def _present(message: Message, name: str) -> bool:
    """Whether an optional field is set; a string without presence (``dealer_id``)
    stands for None when empty."""
    if message.DESCRIPTOR.fields_by_name[name].has_presence:
        return message.HasField(name)
    return bool(getattr(message, name))


def _decode_field(hint: Any, item: Any, name: str) -> Any:
    origin = get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return decode(hint, item)
    if hint is datetime:
        return item.ToDatetime(tzinfo=UTC)
    if hint is timedelta:
        return item.ToTimedelta()
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(item)
        except ValueError:
            allowed = ", ".join(str(member.value) for member in hint)
            raise CodecError(f"{name}: must be one of {allowed}, got {item!r}") from None
    if origin is tuple:
        element = get_args(hint)[0]
        return tuple(_decode_field(element, e, name) for e in item)
    if origin is Mapping:
        return dict(item)
    return item


def _decode_host(message: Message) -> dict[str, tuple[ResourceUsage, ...]]:
    return {
        entry.name: tuple(decode(ResourceUsage, usage) for usage in entry.usages)
        for entry in cast(pb.AnalyticsData, message).host
    }


def _decode_evidence(message: Message) -> dict[str, float | str]:
    found: dict[str, float | str] = {}
    for key, item in cast(pb.Recommendation, message).evidence.items():
        found[key] = item.text if item.WhichOneof("value") == "text" else item.number
    return found


@functools.cache
def _hints(kind: type) -> dict[str, tuple[Any, bool]]:
    """Field name -> (type, may be None), from the dataclass's annotations."""
    found: dict[str, tuple[Any, bool]] = {}
    hints = get_type_hints(kind)
    for field in dataclasses.fields(kind):
        hint = hints[field.name]
        args = get_args(hint)
        is_union = get_origin(hint) in (Union, types.UnionType)
        if is_union and type(None) in args:
            rest = [a for a in args if a is not type(None)]
            found[field.name] = (rest[0], True)
        else:
            found[field.name] = (hint, False)
    return found


# ---- results


def realtime_to_pb(value: Realtime) -> pb.Realtime:
    return cast(pb.Realtime, encode_into(value, pb.Realtime()))


def realtime_from_pb(message: pb.Realtime) -> Realtime:
    return decode(Realtime, message)


def analytics_to_pb(value: Analytics) -> pb.Analytics:
    return cast(pb.Analytics, encode_into(value, pb.Analytics()))


def analytics_from_pb(message: pb.Analytics) -> Analytics:
    return decode(Analytics, message)


def recommendations_to_pb(values: tuple[Recommendation, ...]) -> pb.ListRecommendationsResponse:
    answer = pb.ListRecommendationsResponse()
    for value in values:
        encode_into(value, answer.recommendations.add())
    return answer


def recommendations_from_pb(message: pb.ListRecommendationsResponse) -> tuple[Recommendation, ...]:
    return tuple(decode(Recommendation, item) for item in message.recommendations)


def report_to_pb(value: ReportRecord, with_body: bool = True) -> pb.Report:
    message = cast(pb.Report, encode_into(value, pb.Report()))
    if not with_body:
        message.ClearField("body")
    return message


def report_from_pb(message: pb.Report) -> ReportRecord:
    return decode(ReportRecord, message)


def analytics_data_from_pb(message: pb.AnalyticsData) -> AnalyticsData:
    return decode(AnalyticsData, message)


# ---- requests


def time_range_to_pb(value: TimeRange | str) -> pb.TimeRange:
    """A named range (``"30d"``) or explicit bounds, as a request field."""
    if isinstance(value, str):
        return pb.TimeRange(name=value)
    return pb.TimeRange(start=value.start, end=value.end)


def time_range_from_pb(message: pb.TimeRange, now: datetime) -> TimeRange:
    """The range a request asks for; a ValueError naming ``timeRange`` when it is bad."""
    try:
        return _time_range(message, now)
    except ValueError as exc:
        text = str(exc)
        raise CodecError(text if text.startswith("timeRange") else f"timeRange: {text}") from None


def _time_range(message: pb.TimeRange, now: datetime) -> TimeRange:
    start = _bound(message, "start")
    end = _bound(message, "end")
    if message.name.strip():
        if start is not None or end is not None:
            raise ValueError("give a name such as 30d or explicit start/end, not both")
        return TimeRange.last(message.name, now)
    if start is None:
        raise ValueError("missing: give a name such as 24h, 7d, 30d, or start and end")
    return TimeRange(start, end or now)


def _bound(message: pb.TimeRange, which: str) -> datetime | None:
    stamp = message.HasField(which)
    unix_ms: int = getattr(message, f"{which}_unix_ms")
    if stamp and unix_ms:
        raise ValueError(f"{which}: give a Timestamp or {which}_unix_ms, not both")
    if stamp:
        moment: datetime = getattr(message, which).ToDatetime(tzinfo=UTC)
        return moment
    if unix_ms < 0:
        raise ValueError(f"{which}_unix_ms must not be negative, got {unix_ms}")
    return from_unix_ms(unix_ms) if unix_ms else None


def report_format(
    raw: str, default: ReportFormat | None = ReportFormat.HTML
) -> ReportFormat | None:
    """``"html"``/``"json"``/``"text"``; empty: ``default``."""
    if not raw.strip():
        return default
    try:
        return ReportFormat(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(f.value for f in ReportFormat)
        raise CodecError(f"format: must be one of {allowed}, got {raw!r}") from None


def realtime_request(dealer_id: str) -> pb.GetRealtimeRequest:
    return pb.GetRealtimeRequest(dealer_id=dealer_id)


def analytics_request(dealer_id: str | None, time_range: TimeRange | str) -> pb.GetAnalyticsRequest:
    return pb.GetAnalyticsRequest(
        dealer_id=dealer_id or "", time_range=time_range_to_pb(time_range)
    )


def recommendations_request(
    dealer_id: str | None, time_range: TimeRange | str
) -> pb.ListRecommendationsRequest:
    return pb.ListRecommendationsRequest(
        dealer_id=dealer_id or "", time_range=time_range_to_pb(time_range)
    )


def generate_report_request(
    dealer_id: str | None, time_range: TimeRange | str, fmt: ReportFormat
) -> pb.GenerateReportRequest:
    return pb.GenerateReportRequest(
        dealer_id=dealer_id or "", time_range=time_range_to_pb(time_range), format=fmt.value
    )


def list_reports_request(dealer_id: str | None, limit: int) -> pb.ListReportsRequest:
    return pb.ListReportsRequest(dealer_id=dealer_id or "", limit=limit)


def get_report_request(report_id: int, fmt: ReportFormat | None) -> pb.GetReportRequest:
    return pb.GetReportRequest(report_id=report_id, format=fmt.value if fmt else "")


# ---- JSON, for a shared cache and for `--json` output


_JSON_MESSAGES: dict[str, type[Message]] = {
    KIND_REALTIME: pb.Realtime,
    KIND_ANALYTICS: pb.Analytics,
    KIND_RECOMMENDATIONS: pb.ListRecommendationsResponse,
}


def to_message(kind: str, value: Any) -> Message:
    if kind == KIND_REALTIME:
        return realtime_to_pb(value)
    if kind == KIND_ANALYTICS:
        return analytics_to_pb(value)
    if kind == KIND_RECOMMENDATIONS:
        return recommendations_to_pb(value)
    raise CodecError(f"kind: unknown result kind {kind!r}")


def to_json(kind: str, value: Any) -> str:
    """``value`` (a Realtime, Analytics or tuple of Recommendations) as compact JSON."""
    return json_format.MessageToJson(
        to_message(kind, value), preserving_proto_field_name=True, indent=None
    )


def from_json(kind: str, text: str | bytes) -> Any:
    """The inverse of :func:`to_json`; CodecError when the text is not such a message."""
    if kind not in _JSON_MESSAGES:
        raise CodecError(f"kind: unknown result kind {kind!r}")
    message = _JSON_MESSAGES[kind]()
    try:
        json_format.Parse(text, message)
    except json_format.ParseError as exc:
        raise CodecError(f"{kind}: not a valid cached value: {exc}") from exc
    if kind == KIND_REALTIME:
        return realtime_from_pb(cast(pb.Realtime, message))
    if kind == KIND_ANALYTICS:
        return analytics_from_pb(cast(pb.Analytics, message))
    return recommendations_from_pb(cast(pb.ListRecommendationsResponse, message))


def to_jsonable(kind: str, value: Any) -> dict[str, Any]:
    """The JSON mapping as Python values (for ``--json`` printing)."""
    return json_format.MessageToDict(to_message(kind, value), preserving_proto_field_name=True)
