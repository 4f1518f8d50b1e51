"""Gemini's Schema (the OpenAPI 3.0 subset its `parameters` and `responseSchema` take, by JSON or proto
field names) as JSON Schema, for a function's parameters or a response format on the hub.

Spec: https://ai.google.dev/api/caching#Schema
"""

from __future__ import annotations

from typing import Any

# JSON Schema keywords whose value is a schema, a list of schemas, or a map of them (for `json_schema`)
SCHEMA_ONE = ("items", "additionalProperties", "not", "contains", "propertyNames")
SCHEMA_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
SCHEMA_MAP = ("properties", "$defs", "definitions", "patternProperties")
OPENAPI_ONLY = ("nullable", "propertyOrdering", "example")
# Gemini's Schema fields by their proto names, which its proto-JSON parser takes too
SCHEMA_PROTO_NAMES = {
    "any_of": "anyOf",
    "max_items": "maxItems",
    "min_items": "minItems",
    "max_length": "maxLength",
    "min_length": "minLength",
    "max_properties": "maxProperties",
    "min_properties": "minProperties",
    "property_ordering": "propertyOrdering",
    "additional_properties": "additionalProperties",
}


def json_schema(schema: Any) -> Any:
    """A Gemini schema as JSON Schema: the OpenAPI subset's upper-case types (`OBJECT`, `STRING`) in lower
    case, `nullable` as a `null` type, OpenAPI-only keywords left out. Plain JSON Schema passes unchanged."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        key = SCHEMA_PROTO_NAMES.get(key, key)
        if key == "type":
            if isinstance(value, str) and value.upper() != "TYPE_UNSPECIFIED":
                out[key] = value.lower()
            elif isinstance(value, list):
                out[key] = [v.lower() if isinstance(v, str) else v for v in value]
        elif key in SCHEMA_MAP and isinstance(value, dict):
            out[key] = {k: json_schema(v) for k, v in value.items()}
        elif key in SCHEMA_LIST and isinstance(value, list) or key == "items" and isinstance(value, list):
            out[key] = [json_schema(v) for v in value]
        elif key in SCHEMA_ONE:
            out[key] = json_schema(value)
        elif key in OPENAPI_ONLY or key == "format" and value == "enum":
            continue
        else:
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out
