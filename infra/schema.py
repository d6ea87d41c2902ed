"""The job message's JSON Schema, rewritten from draft 2020-12 (pydantic) into draft 4 for API Gateway models.

API Gateway validates request bodies against JSON Schema draft 4. The rewrite is exact for the keywords the
contract uses (``const`` becomes a one-value ``enum``, ``$defs`` become ``definitions``, ``dependentSchemas``
becomes draft 4's schema-form ``dependencies``, numeric exclusive bounds become draft 4's boolean form); pure
annotations draft 4 lacks are dropped (and ``"default": null``, which CloudFormation would drop), and any
validation keyword draft 4 cannot express raises, so a contract change that the API could not enforce fails the
build instead of passing silently.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Final

DRAFT4: Final = "http://json-schema.org/draft-04/schema#"
_DROPPED: Final = frozenset({"$id", "$schema", "examples", "contentMediaType", "contentEncoding", "deprecated"})
_UNSUPPORTED: Final = frozenset(
    {
        "prefixItems",
        "unevaluatedProperties",
        "unevaluatedItems",
        "dependentRequired",
        "propertyNames",
        "contains",
        "minContains",
        "maxContains",
        "if",
        "then",
        "else",
        "$dynamicRef",
        "$anchor",
    }
)
# Keywords whose value is a map of name -> schema, or a list of schemas, or one schema.
_SCHEMA_MAPS: Final = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# 2020-12 split draft 4's ``dependencies`` in two; its schema form (``dependentSchemas``) has the same meaning.
_RENAMED: Final = {"$defs": "definitions", "dependentSchemas": "dependencies"}
_SCHEMA_LISTS: Final = frozenset({"anyOf", "allOf", "oneOf"})
_SCHEMA_VALUES: Final = frozenset({"items", "additionalProperties", "not"})


class UnsupportedSchemaError(ValueError):
    """The schema uses a keyword JSON Schema draft 4 cannot express."""


def to_draft4(schema: dict[str, Any]) -> dict[str, Any]:
    """A draft 4 copy of a draft 2020-12 schema, with ``$schema`` set for API Gateway."""
    return {"$schema": DRAFT4, **_convert(schema, "#")}


def _convert(node: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _UNSUPPORTED:
            raise UnsupportedSchemaError(f"{where}: {key!r} has no JSON Schema draft 4 equivalent")
        if key in _DROPPED or (key == "default" and value is None):  # CloudFormation drops nulls anyway
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "$ref":
            out[key] = value.replace("#/$defs/", "#/definitions/")
        elif key in _SCHEMA_MAPS:
            out[_RENAMED.get(key, key)] = {name: _convert(sub, f"{where}/{key}/{name}") for name, sub in value.items()}
        elif key in _SCHEMA_LISTS:
            out[key] = [_convert(sub, f"{where}/{key}/{i}") for i, sub in enumerate(value)]
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            out[key] = _convert(value, f"{where}/{key}")
        elif key == "items" and isinstance(value, list):
            raise UnsupportedSchemaError(f"{where}: tuple-form 'items' is not supported")
        else:
            out[key] = value
    return out


def restrict_callback_hosts(schema: dict[str, Any], hosts: tuple[str, ...]) -> dict[str, Any]:
    """The schema with ``callback_url`` limited to ``https://`` URLs on ``hosts`` (an optional port, then a path,
    query or the end: ``https://ok.example@evil.example`` and ``https://ok.example.evil.example`` do not match).
    No hosts: the schema unchanged."""
    if not hosts:
        return schema
    names = "|".join(re.escape(host) for host in hosts)
    pattern = f"^https://({names})(:[0-9]{{1,5}})?([/?#]|$)"
    restricted = copy.deepcopy(schema)
    callback = restricted["properties"]["callback_url"]
    strings = [branch for branch in callback.get("anyOf", [callback]) if branch.get("type") == "string"]
    if len(strings) != 1:
        raise UnsupportedSchemaError("callback_url has no single string form to restrict")
    strings[0]["pattern"] = pattern
    return restricted
