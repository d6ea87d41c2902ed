"""The API Gateway request model: the contract's JSON Schema rewritten as draft 4, with the same verdicts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft4Validator, Draft202012Validator

from infra.schema import DRAFT4, UnsupportedSchemaError, to_draft4
from worker.contract import ContractError, json_schema, parse_message

DRAFT4_SCHEMA = to_draft4(json_schema())
VALID = {"job_id": "t-1", "audio": "s3://bucket/a.mp3"}
FULL = {
    "version": 1,
    "job_id": "Job_42",
    "audio": "https://example.com/a.flac",
    "model": "large-v3",
    "formats": ["json", "srt", "vtt", "txt", "tsv"],
    "language": "en",
    "task": "translate",
    "word_timestamps": True,
    "initial_prompt": "Kubernetes, gRPC",
    "beam_size": 5,
    "diarize": True,
    "speakers": 2,
    "callback_url": "https://backend.example/hooks/stt",
    "metadata": {"userId": "u-9", "nested": {"a": [1, 2]}},
}
# Speaker fields the worker accepts: null means "not given", so it needs no diarize and excludes nothing.
SPEAKERS_VALID = [
    {**VALID, "diarize": True},
    {**VALID, "diarize": False},
    {**VALID, "diarize": True, "min_speakers": 2, "max_speakers": 2},
    {**VALID, "diarize": True, "min_speakers": 1},
    {**VALID, "diarize": True, "max_speakers": 32},
    {**VALID, "diarize": True, "speakers": 1, "min_speakers": None, "max_speakers": None},
    {**VALID, "diarize": True, "speakers": None, "min_speakers": 2, "max_speakers": 5},
    {**VALID, "speakers": None, "min_speakers": None, "max_speakers": None},
]
INVALID = [
    {},
    {"audio": "s3://b/k"},
    {"job_id": "t-1"},
    {**VALID, "job_id": "../etc"},
    {**VALID, "job_id": "x" * 129},
    {**VALID, "version": 2},
    {**VALID, "version": "1"},
    {**VALID, "surprise": True},
    {**VALID, "formats": []},
    {**VALID, "formats": ["pdf"]},
    {**VALID, "task": "summarize"},
    {**VALID, "beam_size": 0},
    {**VALID, "beam_size": 11},
    {**VALID, "beam_size": 2.5},
    {**VALID, "word_timestamps": "yes"},
    {**VALID, "metadata": []},
    {**VALID, "initial_prompt": "x" * 1001},
    {**VALID, "audio": "s3://b/" + "k" * 2048},
    {**VALID, "language": "EN!"},
    {**VALID, "model": "../../model"},
    {**VALID, "diarize": "yes"},
    {**VALID, "diarize": True, "speakers": 0},
    {**VALID, "diarize": True, "speakers": 33},
    {**VALID, "diarize": True, "speakers": 2.5},
    {**VALID, "diarize": True, "min_speakers": 0},
    {**VALID, "diarize": True, "max_speakers": 33},
    {**VALID, "speakers": 2},  # speaker fields need diarize: true
    {**VALID, "diarize": False, "speakers": 2},
    {**VALID, "diarize": None, "speakers": 2},
    {**VALID, "min_speakers": 2},
    {**VALID, "diarize": False, "max_speakers": 4},
    {**VALID, "diarize": True, "speakers": 2, "max_speakers": 3},  # speakers excludes min/max_speakers
    {**VALID, "diarize": True, "speakers": 2, "min_speakers": 1},
    {**VALID, "diarize": True, "speakers": 2, "min_speakers": 1, "max_speakers": 3},
]
# What JSON Schema cannot compare (two values): the API passes these, the worker rejects them as invalid_message.
WORKER_ONLY = [
    {**VALID, "diarize": True, "min_speakers": 4, "max_speakers": 3},
]


def test_is_a_valid_draft4_schema_for_api_gateway() -> None:
    Draft4Validator.check_schema(DRAFT4_SCHEMA)
    assert DRAFT4_SCHEMA["$schema"] == DRAFT4
    text = json.dumps(DRAFT4_SCHEMA)
    for keyword in ('"const"', '"$defs"', '"$id"', "2020-12", '"prefixItems"'):
        assert keyword not in text
    assert DRAFT4_SCHEMA["additionalProperties"] is False
    assert DRAFT4_SCHEMA["required"] == ["job_id", "audio"]
    assert DRAFT4_SCHEMA["properties"]["version"]["enum"] == [1]


@pytest.mark.parametrize(
    "message", [VALID, FULL, {**VALID, "model": None, "language": None, "beam_size": None}, *SPEAKERS_VALID]
)
def test_messages_the_worker_accepts_pass_the_api(message: dict[str, Any]) -> None:
    parsed = parse_message(json.dumps(message))
    assert not list(Draft4Validator(DRAFT4_SCHEMA).iter_errors(message))
    assert not list(Draft4Validator(DRAFT4_SCHEMA).iter_errors(parsed.model_dump(mode="json")))


@pytest.mark.parametrize("message", INVALID, ids=range(len(INVALID)))
def test_messages_the_worker_rejects_structurally_fail_at_the_api(message: dict[str, Any]) -> None:
    with pytest.raises(ContractError):
        parse_message(json.dumps(message))
    assert list(Draft4Validator(DRAFT4_SCHEMA).iter_errors(message))


@pytest.mark.parametrize("message", WORKER_ONLY, ids=range(len(WORKER_ONLY)))
def test_what_no_schema_can_compare_is_left_to_the_worker(message: dict[str, Any]) -> None:
    with pytest.raises(ContractError, match=r"max_speakers: max_speakers 3 is below min_speakers 4"):
        parse_message(json.dumps(message))
    assert Draft4Validator(DRAFT4_SCHEMA).is_valid(message)
    assert Draft202012Validator(json_schema()).is_valid(message)


@pytest.mark.parametrize("message", [VALID, FULL, *SPEAKERS_VALID, *INVALID, *WORKER_ONLY])
def test_same_verdict_as_the_original_2020_12_schema(message: dict[str, Any]) -> None:
    original = Draft202012Validator(json_schema()).is_valid(message)
    assert Draft4Validator(DRAFT4_SCHEMA).is_valid(message) == original


def test_speaker_rules_become_draft4_dependencies() -> None:
    # A speaker field may be null without diarize; given a number it needs diarize: true (an enum, not const).
    assert set(json_schema()["dependentSchemas"]) == {"speakers", "min_speakers", "max_speakers"}
    dependencies = DRAFT4_SCHEMA["dependencies"]
    assert set(dependencies) == {"speakers", "min_speakers", "max_speakers"}
    assert dependencies["speakers"]["anyOf"] == [
        {"properties": {"speakers": {"type": "null"}}},
        {"properties": {"diarize": {"enum": [True]}}, "required": ["diarize"]},
    ]
    assert dependencies["max_speakers"]["anyOf"][1]["properties"]["speakers"] == {"type": "null"}


def test_rewrites_newer_keywords() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:x",
        "type": "object",
        "properties": {
            "n": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10, "examples": [5]},
            "kind": {"const": "a"},
            "child": {"$ref": "#/$defs/Child"},
            "list": {"type": "array", "items": {"$ref": "#/$defs/Child"}},
        },
        "$defs": {"Child": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
        "dependentSchemas": {"kind": {"required": ["n"], "properties": {"n": {"const": 1}}}},
    }
    out = to_draft4(schema)
    Draft4Validator.check_schema(out)
    assert "$id" not in out and "$defs" not in out
    assert out["properties"]["n"] == {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 10,
                                      "exclusiveMaximum": True}  # fmt: skip
    assert out["properties"]["kind"] == {"enum": ["a"]}
    assert out["properties"]["child"] == {"$ref": "#/definitions/Child"}
    assert out["properties"]["list"]["items"] == {"$ref": "#/definitions/Child"}
    assert out["definitions"]["Child"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert out["dependencies"] == {"kind": {"required": ["n"], "properties": {"n": {"enum": [1]}}}}
    validator = Draft4Validator(out)
    assert validator.is_valid({"n": 1, "kind": "a", "child": None, "list": ["x"]})
    assert validator.is_valid({"n": 5})
    assert not validator.is_valid({"n": 0})
    assert not validator.is_valid({"kind": "b"})
    assert not validator.is_valid({"kind": "a"})  # dependency: kind needs n
    assert not validator.is_valid({"kind": "a", "n": 5})


@pytest.mark.parametrize("keyword", ["prefixItems", "if", "dependentRequired", "unevaluatedProperties"])
def test_keywords_draft4_cannot_enforce_fail_loudly(keyword: str) -> None:
    with pytest.raises(UnsupportedSchemaError, match=keyword):
        to_draft4({"type": "object", "properties": {"x": {keyword: {}}}})
