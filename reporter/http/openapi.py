"""The OpenAPI 3.1 document of the JSON API, served at /openapi.json.

Hand-written so that it says exactly what the API promises; tests keep it
true (every route is documented, and schemathesis checks live answers
against it).
"""

from __future__ import annotations

import copy
from typing import Any

Schema = dict[str, Any]

ERROR_CODES = (
    "invalid_argument",
    "unauthenticated",
    "permission_denied",
    "not_found",
    "conflict",
    "rate_limited",
    "internal",
    "unavailable",
)
_ERRORS = {
    "400": "bad input; the message names the parameter",
    "401": "no token, or not a valid one",
    "403": "the token does not reach that dealer",
    "404": "no such dealer or object (or not one the token may see)",
    "429": "too many requests from this client; see Retry-After",
    "500": "internal error (logged on the server, no details here)",
    "503": "the store is unavailable; retry later",
}
_RATE_HEADERS = {
    "RateLimit-Limit": "requests allowed per window",
    "RateLimit-Remaining": "requests left in the current window",
    "RateLimit-Reset": "seconds until the window resets",
    "RateLimit-Policy": "the policy: '<limit>;w=<window seconds>'",
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


NUMBER_OR_NULL = _nullable("number")
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = _nullable("string", format="date-time")
TEXT_OR_NULL = _nullable("string")


def _object(properties: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": [key for key in properties if key not in optional],
    }


def _numbers(*names: str) -> dict[str, Schema]:
    return {name: NUMBER_OR_NULL for name in names}


STATUS = {"type": "string", "enum": ["healthy", "warning", "critical", "unknown"]}
POINTS = {
    "type": "array",
    "items": {
        "type": "array",
        "prefixItems": [TIME, NUMBER_OR_NULL],
        "minItems": 2,
        "maxItems": 2,
    },
}
TREND = _nullable("object") | {
    "properties": {
        "direction": {"type": "string"},
        "pValue": NUMBER_OR_NULL,
        "slopePerHour": NUMBER_OR_NULL,
        "changePercent": NUMBER_OR_NULL,
        "method": {"type": "string"},
        "n": {"type": "integer"},
    },
    "required": ["direction", "pValue", "slopePerHour", "changePercent", "method", "n"],
}
RANGE = _object({"start": TIME, "end": TIME, "step": {"type": "integer"}}, optional=("step",))

SCHEMAS: dict[str, Schema] = {
    "Error": _object(
        {
            "success": {"const": False},
            "error": _object(
                {
                    "code": {"type": "string", "enum": list(ERROR_CODES)},
                    "message": {"type": "string"},
                }
            ),
        }
    ),
    "Monitoring": _object(
        {
            "dealerId": {"type": "string"},
            "timestamp": TIME,
            "systemHealth": _object(
                {
                    "status": STATUS,
                    **_numbers("uptime", "responseTime", "p95ResponseTime", "errorRate"),
                    "throughput": NUMBER_OR_NULL,
                    "reasons": {"type": "array", "items": {"type": "string"}},
                }
            ),
            "apiPerformance": {"type": "array", "items": _ref("EndpointHealth")},
            "resourceUsage": _object(
                {
                    **_numbers("cpu", "memory", "disk", "network"),
                    "status": STATUS,
                    "asOf": TIME_OR_NULL,
                }
            ),
        }
    ),
    "EndpointHealth": _object(
        {
            "endpoint": {"type": "string"},
            "method": {"type": "string"},
            "source": {"type": "string"},
            **_numbers("avgResponseTime", "p95ResponseTime", "successRate", "callsPerHour"),
            "errorCount": {"type": "integer"},
            "lastError": TEXT_OR_NULL,
            "lastErrorAt": TIME_OR_NULL,
        }
    ),
    "Analytics": _object(
        {
            "dealerId": TEXT_OR_NULL,
            "timeRange": RANGE,
            "summary": _object(
                {
                    **_numbers(
                        "avgResponseTime",
                        "peakResponseTime",
                        "p50ResponseTime",
                        "p95ResponseTime",
                        "p99ResponseTime",
                    ),
                    "totalRequests": {"type": "integer"},
                    "errorCount": {"type": "integer"},
                    **_numbers("errorRate", "throughput", "uptime"),
                }
            ),
            "trends": _object({"responseTime": TREND, "errorRate": TREND, "throughput": TREND}),
            "endpoints": {"type": "array", "items": _ref("EndpointAnalytics")},
            "resources": {"type": "array", "items": _ref("Resource")},
            "series": _object(
                {
                    name: POINTS
                    for name in (
                        "responseTime",
                        "responseTimeP95",
                        "errorRate",
                        "throughput",
                        "cpu",
                        "memory",
                        "disk",
                        "network",
                    )
                }
            ),
            "recommendations": {"type": "array", "items": _ref("Recommendation")},
        }
    ),
    "EndpointAnalytics": _object(
        {
            "endpoint": {"type": "string"},
            "method": {"type": "string"},
            "requests": {"type": "integer"},
            "errorCount": {"type": "integer"},
            "clientErrorCount": {"type": "integer"},
            **_numbers(
                "errorRate",
                "successRate",
                "callsPerHour",
                "avgResponseTime",
                "peakResponseTime",
                "p50ResponseTime",
                "p95ResponseTime",
                "p99ResponseTime",
            ),
            "lastError": TEXT_OR_NULL,
            "lastErrorAt": TIME_OR_NULL,
        }
    ),
    "Resource": _object(
        {
            "name": {"type": "string"},
            "unit": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            **_numbers("avg", "peak", "latest"),
        }
    ),
    "Recommendation": _object(
        {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "impact": {"type": "string", "enum": ["high", "medium", "low"]},
            "effort": {"type": "string", "enum": ["low", "medium", "high"]},
            "priority": {"type": "integer"},
            "dealerId": TEXT_OR_NULL,
            "endpoint": TEXT_OR_NULL,
            "evidence": {
                "type": "object",
                "additionalProperties": {"type": ["number", "string", "null"]},
            },
            "timeRange": RANGE,
        }
    ),
    "Rule": _object(
        {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "alertType": {"type": "string"},
            "kind": {"type": "string"},
            "metric": {"type": "string"},
            "aggregation": {"type": "string", "enum": ["avg", "max", "min", "p95", "rate"]},
            "windowSeconds": {"type": "integer"},
            "comparator": {"type": "string", "enum": [">", ">=", "<", "<="]},
            **_numbers(
                "warningThreshold", "criticalThreshold", "warningRecovery", "criticalRecovery"
            ),
            "forSeconds": {"type": "integer"},
            "dealerId": TEXT_OR_NULL,
            "labelMatchers": {"type": "object", "additionalProperties": {"type": "string"}},
            "channels": {"type": "array", "items": {"type": "string"}},
            "enabled": {"type": "boolean"},
            "builtin": {"type": "boolean"},
        }
    ),
    "RuleRequest": {
        "type": "object",
        "description": (
            "The seed's {alertType, threshold, dealerId} (alertType one of response_time, "
            "error_rate, cpu, memory, disk), or a full rule when metric is given."
        ),
        "properties": {
            "alertType": {"type": "string"},
            "threshold": {"type": "number"},
            "dealerId": {"type": "string"},
            "name": {"type": "string"},
            "metric": {"type": "string"},
            "aggregation": {"type": "string", "enum": ["avg", "max", "min", "p95", "rate"]},
            "windowSeconds": {"type": "integer", "minimum": 1},
            "comparator": {"type": "string", "enum": [">", ">=", "<", "<="]},
            "warningThreshold": {"type": "number"},
            "criticalThreshold": {"type": "number"},
            "warningRecovery": {"type": "number"},
            "criticalRecovery": {"type": "number"},
            "forSeconds": {"type": "integer", "minimum": 0},
            "labelMatchers": {"type": "object", "additionalProperties": {"type": "string"}},
            "channels": {"type": "array", "items": {"type": "string"}},
            "enabled": {"type": "boolean"},
        },
    },
    "Alert": _object(
        {
            "id": {"type": "integer"},
            "dealerId": TEXT_OR_NULL,
            "agentId": TEXT_OR_NULL,
            "ruleId": _nullable("integer"),
            "type": {"type": "string"},
            "severity": {"type": "string"},
            "message": {"type": "string"},
            "state": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "value": NUMBER_OR_NULL,
            "threshold": NUMBER_OR_NULL,
            "startedAt": TIME_OR_NULL,
            "acknowledgedBy": TEXT_OR_NULL,
            "acknowledgedAt": TIME_OR_NULL,
            "resolvedAt": TIME_OR_NULL,
        }
    ),
    "Report": _object(
        {
            "id": {"type": "integer"},
            "dealerId": TEXT_OR_NULL,
            "period": {"type": "string"},
            "start": TIME,
            "end": TIME,
            "createdAt": TIME,
            "title": {"type": "string"},
            "format": {"type": "string", "enum": ["html", "json", "text"]},
        }
    ),
    "Dealer": _object({"dealerId": {"type": "string"}, "name": {"type": "string"}}),
}


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _path_id(name: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    }


DEALER = _query("dealerId", "the dealer (a dealer token: its own, the default); admin: any")
LIMIT_ALERTS = _query("limit", "most alerts", {"type": "integer", "minimum": 1, "maximum": 1000})
LIMIT_REPORTS = _query("limit", "most reports", {"type": "integer", "minimum": 1, "maximum": 500})


def _envelope(data: Schema) -> Schema:
    return _object({"success": {"const": True}, "data": data})


def _operation(
    summary: str, data: Schema | None, parameters: list[Schema], status: str = "200"
) -> Schema:
    headers = {
        name: {"description": text, "schema": {"type": "integer"}}
        for name, text in _RATE_HEADERS.items()
    }
    headers["RateLimit-Policy"]["schema"] = {"type": "string"}
    responses: dict[str, Schema] = {
        code: {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
        for code, text in _ERRORS.items()
    }
    responses["429"]["headers"] = {
        "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
    }
    if data is not None:
        responses[status] = {
            "description": "success",
            "headers": headers,
            "content": {"application/json": {"schema": _envelope(data)}},
        }
    return {"summary": summary, "parameters": parameters, "responses": responses}


def _paths() -> dict[str, Schema]:
    def array_of(name: str) -> Schema:
        return {"type": "array", "items": _ref(name)}

    time_range = _query("timeRange", "1h, 24h (default), 7d, 30d or <n>m/<n>h/<n>d ending now")
    start = _query(
        "start",
        "range start (ISO 8601 with zone), with end",
        {"type": "string", "format": "date-time"},
    )
    end = _query(
        "end",
        "range end (ISO 8601 with zone), with start",
        {"type": "string", "format": "date-time"},
    )
    state = _query(
        "state",
        "firing (default), resolved or all",
        {"type": "string", "enum": ["firing", "resolved", "all"]},
    )
    create = _operation("create an alert rule", _ref("Rule"), [], status="201")
    create["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": _ref("RuleRequest")}},
    }
    create["responses"]["409"] = {
        "description": "a rule of that name exists",
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    acknowledge = _operation("acknowledge an alert", _ref("Alert"), [_path_id("alert_id")])
    acknowledge["requestBody"] = {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"by": {"type": "string", "maxLength": 200}},
                }
            }
        },
    }
    report = _operation(
        "one report's body, in its format",
        None,
        [
            _path_id("report_id"),
            _query(
                "format", "html, json or text", {"type": "string", "enum": ["html", "json", "text"]}
            ),
        ],
    )
    report["responses"]["200"] = {
        "description": "the report",
        "content": {
            "text/html": {"schema": {"type": "string"}},
            "application/json": {"schema": {}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
    return {
        "/api/ai/performance-monitoring": {
            "get": _operation("a dealer's health right now", _ref("Monitoring"), [DEALER])
        },
        "/api/ai/performance-analytics": {
            "get": _operation(
                "analytics over a range (admin without dealerId: every dealer)",
                _ref("Analytics"),
                [DEALER, time_range, start, end],
            )
        },
        "/api/ai/performance-alerts": {
            "get": _operation("alert rules", array_of("Rule"), [DEALER]),
            "post": create,
        },
        "/api/ai/alerts": {
            "get": _operation(
                "alerts, newest first", array_of("Alert"), [DEALER, state, LIMIT_ALERTS]
            )
        },
        "/api/ai/alerts/{alert_id}/acknowledge": {"post": acknowledge},
        "/api/ai/reports": {
            "get": _operation(
                "stored reports, newest first", array_of("Report"), [DEALER, LIMIT_REPORTS]
            )
        },
        "/api/ai/reports/{report_id}": {"get": report},
        "/api/dealers": {"get": _operation("dealers the token may see", array_of("Dealer"), [])},
    }


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may not change the shared one)."""
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "DealerPulse reporter API",
                "version": "1.0.0",
                "description": (
                    "Performance monitoring of DealershipAI dealer servers. Authenticate with "
                    "'Authorization: Bearer <token>' (a dealer token sees its own dealer, an "
                    "admin token every dealer). Every /api answer carries RateLimit-* headers."
                ),
            },
            "servers": [{"url": "/"}],
            "security": [{"bearer": []}],
            "components": {
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                "schemas": SCHEMAS,
            },
            "paths": _paths(),
        }
    )
