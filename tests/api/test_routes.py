"""Route templates: bounded series names, whatever the raw paths look like."""

from __future__ import annotations

import pytest

from agent.instrument.routes import (
    normalize_method,
    normalize_template,
    template_from_path,
)


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/", "/"),
        ("/api/vehicles", "/api/vehicles"),
        ("/api/vehicles/42", "/api/vehicles/{id}"),
        ("/api/vehicles/1HGCM82633A004352/photos/7", "/api/vehicles/{id}/photos/{id}"),
        ("/api/leads/3f2b8a4e-9c1d-4f6e-8a2b-1c3d5e7f9a0b", "/api/leads/{id}"),
        ("/api/deals/507f1f77bcf86cd799439011", "/api/deals/{id}"),
        ("/api/deals/5f3a9c1e", "/api/deals/{id}"),
        ("/api/v2/inventory", "/api/v2/inventory"),  # a version is no id
        ("/api/feed/deadbeef", "/api/feed/deadbeef"),  # a hex-looking word stays
        ("/api/search/oauth2callback", "/api/search/oauth2callback"),
        ("/a\x00b", "/a?b"),
    ],
)
def test_ids_in_raw_paths_become_placeholders(path: str, template: str) -> None:
    assert template_from_path(path) == template


def test_long_paths_are_clipped() -> None:
    assert len(template_from_path("/x" * 1000)) == 512


@pytest.mark.parametrize(
    ("framework_template", "template"),
    [
        ("/api/vehicles/{vehicle_id:int}", "/api/vehicles/{vehicle_id}"),
        ("/files/{path:path}", "/files/{path}"),
        ("/api/vehicles/<int:vehicle_id>", "/api/vehicles/{vehicle_id}"),
        ("/api/<vin>/photos/<any(a, b):kind>", "/api/{vin}/photos/{kind}"),
    ],
)
def test_framework_templates_share_one_placeholder_style(
    framework_template: str, template: str
) -> None:
    assert normalize_template(framework_template) == template


def test_non_standard_methods_fold_into_other() -> None:
    assert normalize_method("get") == "GET"
    assert normalize_method("PROPFIND") == "OTHER"
