"""The SQS message contract: worker/contract/message.py."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from worker.contract import (
    MAX_MESSAGE_BYTES,
    MAX_METADATA_BYTES,
    OFFICIAL_MODELS,
    ContractError,
    JobRequest,
    best_effort_ids,
    json_schema,
    parse_message,
)

MINIMAL = {"job_id": "job-1", "audio": "s3://bucket/audio/in.flac"}

FULL = {
    "version": 1,
    "job_id": "Job_42-abc",
    "audio": "https://media.example.com/a/b.mp3?sig=x",
    "model": "Large-V3",
    "formats": ["SRT", "json", "srt", "vtt"],
    "language": "EN",
    "task": "translate",
    "word_timestamps": True,
    "initial_prompt": "Names: Zoë, Kowalczyk.",
    "beam_size": 5,
    "callback_url": "https://api.example.com/hooks/whisper",
    "metadata": {"tenant": "t1", "tags": ["a", "b"], "n": 3},
}

LEGACY = {
    "transcriptionId": "tr_123",
    "userId": "user-9",
    "s3AudioUrl": "s3://uploads/user-9/voice.m4a",
    "model": "BASE",
    "format": "SRT",
    "callbackUrl": "https://backend.example.com/cb",
}


def body(**fields: Any) -> str:
    """MINIMAL with ``fields`` merged in (a value of ... drops the key)."""
    message = {**MINIMAL, **fields}
    return json.dumps({k: v for k, v in message.items() if v is not ...})


def rejected(raw: str | bytes) -> ContractError:
    with pytest.raises(ContractError) as info:
        parse_message(raw)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.errors and all(set(item) == {"field", "message"} for item in err.errors)
    return err


def fields_of(err: ContractError) -> set[str]:
    return {item["field"] for item in err.errors}


# ------------------------------------------------------------------------------------------ accepted


def test_minimal_message_gets_defaults() -> None:
    job = parse_message(json.dumps(MINIMAL))
    assert job.version == 1
    assert job.job_id == "job-1"
    assert job.audio == "s3://bucket/audio/in.flac"
    assert job.model is None
    assert job.formats == ["json"]
    assert job.language is None
    assert job.task == "transcribe"
    assert job.word_timestamps is False
    assert job.initial_prompt is None
    assert job.beam_size is None
    assert (job.diarize, job.speakers, job.min_speakers, job.max_speakers) == (False, None, None, None)
    assert job.callback_url is None
    assert job.metadata == {}


def test_defaults_are_not_shared_between_instances() -> None:
    a = parse_message(json.dumps(MINIMAL))
    b = parse_message(json.dumps(MINIMAL))
    assert a.formats is not b.formats
    assert a.metadata is not b.metadata


def test_full_message_is_normalised() -> None:
    job = parse_message(json.dumps(FULL).encode("utf-8"))
    assert job.job_id == "Job_42-abc"
    assert job.audio == FULL["audio"]
    assert job.model == "large-v3"
    assert job.formats == ["srt", "json", "vtt"]  # lower-cased, de-duplicated, order kept
    assert job.language == "en"
    assert job.task == "translate"
    assert job.word_timestamps is True
    assert job.initial_prompt == "Names: Zoë, Kowalczyk."
    assert job.beam_size == 5
    assert job.callback_url == "https://api.example.com/hooks/whisper"
    assert job.metadata == FULL["metadata"]


def test_job_request_is_frozen() -> None:
    job = parse_message(json.dumps(MINIMAL))
    with pytest.raises(ValidationError):
        job.job_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "audio",
    ["s3://bucket/key", "s3://my.bucket/dir/file name.wav", "https://h.example/x", "http://10.0.0.1:8080/a"],
)
def test_audio_urls_accepted(audio: str) -> None:
    assert parse_message(body(audio=audio)).audio == audio


@pytest.mark.parametrize("model", ["tiny.en", "turbo", "my-finetune_v2", *OFFICIAL_MODELS])
def test_models_accepted(model: str) -> None:
    assert parse_message(body(model=model.upper())).model == model.lower()


@pytest.mark.parametrize(
    ("language", "code"),
    [("de", "de"), ("haw", "haw"), ("english", "en"), ("haitian creole", "ht"), ("Castilian", "es"), (None, None)],
)
def test_languages_accepted_and_stored_as_codes(language: str | None, code: str | None) -> None:
    assert parse_message(body(language=language)).language == code


def test_language_table_matches_whisper() -> None:
    from whisper.tokenizer import LANGUAGES as WHISPER_LANGUAGES
    from whisper.tokenizer import TO_LANGUAGE_CODE

    from worker.contract.languages import LANGUAGES, language_code

    assert list(LANGUAGES.items()) == list(WHISPER_LANGUAGES.items())
    assert all(language_code(name) == code for name, code in TO_LANGUAGE_CODE.items())


def test_explicit_nulls_mean_defaults() -> None:
    job = parse_message(body(model=None, language=None, beam_size=None, callback_url=None))
    assert (job.model, job.language, job.beam_size, job.callback_url) == (None, None, None, None)


# ------------------------------------------------------------------------------------------- legacy


def test_legacy_camel_case_is_mapped() -> None:
    job = parse_message(json.dumps(LEGACY))
    assert job.version == 1
    assert job.job_id == "tr_123"
    assert job.audio == "s3://uploads/user-9/voice.m4a"
    assert job.model == "base"
    assert job.formats == ["srt"]
    assert job.callback_url == "https://backend.example.com/cb"
    assert job.metadata == {"userId": "user-9"}
    assert job.task == "transcribe"
    assert job.language is None
    assert job.callback_shape == "legacy"  # its callback carries what legacy backends read
    assert parse_message(body()).callback_shape == "v1"


def test_legacy_metadata_is_merged_with_user_id() -> None:
    job = parse_message(json.dumps({**LEGACY, "metadata": {"plan": "pro"}}))
    assert job.metadata == {"plan": "pro", "userId": "user-9"}


def test_legacy_minimal() -> None:
    job = JobRequest.model_validate({"transcriptionId": "t1", "s3AudioUrl": "s3://b/k"})
    assert (job.job_id, job.audio, job.formats, job.model, job.metadata) == (
        "t1",
        "s3://b/k",
        ["json"],
        None,
        {},
    )


def test_legacy_unknown_key_rejected() -> None:
    err = rejected(json.dumps({**LEGACY, "priority": "high"}))
    assert fields_of(err) == {"priority"}
    assert "unknown field 'priority'" in str(err)


def test_legacy_mixed_with_v1_keys_rejected() -> None:
    err = rejected(json.dumps({**LEGACY, "job_id": "x"}))
    assert "unknown field 'job_id'" in str(err)


def test_legacy_errors_use_legacy_names() -> None:
    err = rejected(json.dumps({**LEGACY, "transcriptionId": "../x", "format": "pdf", "s3AudioUrl": "s3://b"}))
    assert fields_of(err) == {"transcriptionId", "format", "s3AudioUrl"}


# ------------------------------------------------------------------------------------------ job_id


def test_missing_job_id() -> None:
    err = rejected(body(job_id=...))
    assert fields_of(err) == {"job_id"}
    assert str(err).startswith("job_id: Field required")


@pytest.mark.parametrize(
    "job_id",
    [
        "../etc",
        "/abs",
        "a/b",
        "a\\b",
        "..",
        "a.b",
        "j\u043eb",  # Cyrillic small o
        "\uff4aob",  # fullwidth j
        "x" * 129,
        "has space",
        " lead",
        "trail\n",
        "",
    ],
)
def test_bad_job_id(job_id: str) -> None:
    err = rejected(body(job_id=job_id))
    assert fields_of(err) == {"job_id"}
    assert str(err).startswith("job_id: String should match pattern")


def test_job_id_boundaries() -> None:
    assert parse_message(body(job_id="x" * 128)).job_id == "x" * 128
    assert parse_message(body(job_id="A")).job_id == "A"


@pytest.mark.parametrize("job_id", [123, 1.5, True, None, ["a"]])
def test_non_string_job_id(job_id: Any) -> None:
    err = rejected(body(job_id=job_id))
    assert fields_of(err) == {"job_id"}
    assert "job_id: Input should be a valid string" in str(err)


# ------------------------------------------------------------------------------------------- audio


@pytest.mark.parametrize(
    ("audio", "needle"),
    [
        ("ftp://host/file.mp3", "s3://bucket/key, https:// or http://"),
        ("file:///etc/passwd", "s3://bucket/key, https:// or http://"),
        ("/local/path.wav", "s3://bucket/key, https:// or http://"),
        ("s3://bucket", "non-empty key"),
        ("s3://bucket/", "non-empty key"),
        ("s3:///key", "bucket"),
        ("https:///nohost", "host"),
        ("https://host/a b", "whitespace"),
        ("s3://bucket/k\x00ey", "control"),
        ("https://h:99999999/x", "malformed"),
        ("s3://bucket/" + "k" * 2048, "at most 2048"),
    ],
)
def test_bad_audio(audio: str, needle: str) -> None:
    err = rejected(body(audio=audio))
    assert fields_of(err) == {"audio"}
    assert str(err).startswith("audio: ")
    assert needle in str(err)


def test_missing_audio() -> None:
    assert fields_of(rejected(body(audio=...))) == {"audio"}


@pytest.mark.parametrize("url", ["ftp://h/cb", "s3://b/k", "https://", "not a url", "https://" + "h" * 2048])
def test_bad_callback_url(url: str) -> None:
    err = rejected(body(callback_url=url))
    assert fields_of(err) == {"callback_url"}
    assert str(err).startswith("callback_url: ")


# ---------------------------------------------------------------------------------- other fields


def test_unknown_field_is_named() -> None:
    err = rejected(body(foo=1))
    assert err.errors == [{"field": "foo", "message": "unknown field 'foo'"}]
    assert str(err) == "unknown field 'foo'"


def test_several_errors_are_all_reported() -> None:
    err = rejected(body(job_id="../x", beam_size=0, foo=1, bar=2))
    assert fields_of(err) == {"job_id", "beam_size", "foo", "bar"}
    for name in ("job_id", "beam_size", "'foo'", "'bar'"):
        assert name in str(err)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("word_timestamps", "yes"),
        ("word_timestamps", 1),
        ("beam_size", 0),
        ("beam_size", 11),
        ("beam_size", "5"),
        ("beam_size", 2.5),
        ("beam_size", True),
        ("task", "summarise"),
        ("version", 2),
        ("version", True),
        ("version", "1"),
        ("model", "../large"),
        ("model", "-large"),
        ("model", "m" * 65),
        ("model", 3),
        ("language", "e"),
        ("language", "english1"),
        ("language", "x" * 21),
        ("language", "xx"),
        ("language", "klingon"),
        ("initial_prompt", "p" * 1001),
        ("initial_prompt", 5),
        ("metadata", ["not", "a", "dict"]),
        ("diarize", "yes"),
        ("diarize", 1),
        ("diarize", None),
    ],
)
def test_wrong_values(field: str, value: Any) -> None:
    err = rejected(body(**{field: value}))
    assert fields_of(err) == {field}
    assert str(err).startswith(f"{field}: ")


@pytest.mark.parametrize("formats", [["pdf"], ["json", "pdf"], [], "srt", [1]])
def test_bad_formats(formats: Any) -> None:
    err = rejected(body(formats=formats))
    assert {f.split(".")[0] for f in fields_of(err)} == {"formats"}
    assert str(err).startswith("formats")


def test_metadata_size_limit() -> None:
    # {"x":"..."} is 8 bytes of overhead.
    fits = {"x": "y" * (MAX_METADATA_BYTES - 8)}
    assert parse_message(body(metadata=fits)).metadata == fits
    err = rejected(body(metadata={"x": "y" * (MAX_METADATA_BYTES - 7)}))
    assert fields_of(err) == {"metadata"}
    assert "metadata: JSON encoding is 4097 bytes, more than the 4096 allowed" in str(err)


def test_metadata_size_counts_utf8_bytes() -> None:
    err = rejected(body(metadata={"x": "é" * 2100}))  # 2100 chars, 4200 bytes
    assert fields_of(err) == {"metadata"}


def test_lone_surrogate_is_rejected() -> None:
    err = rejected('{"job_id": "a", "audio": "s3://b/k", "initial_prompt": "x\\ud800"}')
    assert fields_of(err) == {"initial_prompt"}


# -------------------------------------------------------------------------------------------- body


def test_body_not_utf8() -> None:
    err = rejected(b"\xff\xfe")
    assert err.errors[0]["field"] == "body"
    assert str(err).startswith("body is not valid UTF-8")


def test_body_not_json() -> None:
    err = rejected("{not json")
    assert str(err).startswith("body is not valid JSON: ")
    assert fields_of(err) == {"body"}


@pytest.mark.parametrize("raw", ["", "   ", '{"job_id": "a", "audio": "s3://b/k"} trailing'])
def test_body_empty_or_trailing_garbage(raw: str) -> None:
    assert str(rejected(raw)).startswith("body is not valid JSON")


@pytest.mark.parametrize(
    ("raw", "kind"), [("[1, 2]", "an array"), ('"s"', "a string"), ("null", "null"), ("3", "a number")]
)
def test_body_not_an_object(raw: str, kind: str) -> None:
    err = rejected(raw)
    assert str(err) == f"body must be a JSON object, not {kind}"
    assert fields_of(err) == {"body"}


def test_duplicate_keys_rejected() -> None:
    err = rejected('{"job_id": "a", "audio": "s3://b/k", "job_id": "b"}')
    assert "duplicate key 'job_id'" in str(err)


def test_nan_rejected() -> None:
    assert "NaN" in str(rejected('{"job_id": "a", "audio": "s3://b/k", "metadata": {"x": NaN}}'))


def test_deep_nesting_does_not_crash() -> None:
    raw = '{"job_id": "a", "audio": "s3://b/k", "metadata": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    assert str(rejected(raw)).startswith("body is not valid JSON")


def test_body_over_sqs_limit() -> None:
    padding = "p" * MAX_MESSAGE_BYTES
    err = rejected(body(initial_prompt=padding))
    assert fields_of(err) == {"body"}
    assert f"more than the {MAX_MESSAGE_BYTES} allowed" in str(err)
    err = rejected(body(initial_prompt=padding).encode())
    assert f"more than the {MAX_MESSAGE_BYTES} allowed" in str(err)


def test_body_size_counts_utf8_bytes() -> None:
    raw = json.dumps(
        {**MINIMAL, "metadata": {"x": "é" * (MAX_MESSAGE_BYTES // 2)}}, ensure_ascii=False
    )  # fewer chars than the limit, more bytes
    assert len(raw) < MAX_MESSAGE_BYTES < len(raw.encode())
    assert "more than the" in str(rejected(raw))


def test_body_wrong_type() -> None:
    assert "str or bytes" in str(rejected(123))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- best effort


def test_best_effort_ids_on_broken_v1_message() -> None:
    raw = json.dumps(
        {
            "job_id": "job-7",
            "audio": "ftp://nope",
            "beam_size": 99,
            "callback_url": "https://api.example.com/cb",
            "metadata": {"tenant": "t"},
        }
    )
    with pytest.raises(ContractError):
        parse_message(raw)
    assert best_effort_ids(raw) == ("job-7", "https://api.example.com/cb", {"tenant": "t"})
    assert best_effort_ids(raw.encode()) == ("job-7", "https://api.example.com/cb", {"tenant": "t"})


def test_best_effort_ids_on_broken_legacy_message() -> None:
    raw = json.dumps({**LEGACY, "format": "pdf", "metadata": {"plan": "pro"}})
    with pytest.raises(ContractError):
        parse_message(raw)
    assert best_effort_ids(raw) == (
        "tr_123",
        "https://backend.example.com/cb",
        {"plan": "pro", "userId": "user-9"},
    )


def test_best_effort_ids_only_returns_safe_values() -> None:
    raw = json.dumps(
        {
            "job_id": "../../etc",
            "callback_url": "file:///etc/passwd",
            "metadata": {"x": "y" * MAX_METADATA_BYTES},
        }
    )
    assert best_effort_ids(raw) == (None, None, {})
    assert best_effort_ids(json.dumps({"job_id": 5, "callback_url": 7, "metadata": "m"})) == (None, None, {})


def test_best_effort_ids_ignores_duplicated_keys() -> None:
    raw = '{"job_id": "a", "callback_url": "https://good/cb", "callback_url": "https://evil/cb"}'
    assert best_effort_ids(raw) == ("a", None, {})


@pytest.mark.parametrize(
    "raw", [b"\xff\xfe", "not json", "[1]", "null", "", '{"metadata": {"x": ' + "[" * 100_000 + "}", 42, None]
)
def test_best_effort_ids_never_raises(raw: Any) -> None:
    assert best_effort_ids(raw) == (None, None, {})


# ---------------------------------------------------------------------------------------- speakers


@pytest.mark.parametrize(
    "fields",
    [
        {"diarize": True},
        {"diarize": True, "speakers": 1},
        {"diarize": True, "speakers": 32},
        {"diarize": True, "min_speakers": 2},
        {"diarize": True, "max_speakers": 6},
        {"diarize": True, "min_speakers": 3, "max_speakers": 3},
        {"diarize": True, "speakers": 2, "min_speakers": None, "max_speakers": None},
        {"diarize": True, "speakers": None, "min_speakers": 1, "max_speakers": 32},
        {"speakers": None, "min_speakers": None, "max_speakers": None},  # null is "not given": no diarize needed
    ],
)
def test_speaker_fields_accepted(fields: dict[str, Any]) -> None:
    job = parse_message(body(**fields))
    assert job.diarize is fields.get("diarize", False)
    for name in ("speakers", "min_speakers", "max_speakers"):
        assert getattr(job, name) == fields.get(name)


def test_speaker_fields_survive_the_round_trip_a_client_sends() -> None:
    job = parse_message(body(diarize=True, min_speakers=2, max_speakers=4))
    sent = json.loads(job.model_dump_json(exclude_none=True))
    assert (sent["diarize"], sent["min_speakers"], sent["max_speakers"]) == (True, 2, 4)
    assert "speakers" not in sent
    assert parse_message(json.dumps(sent)) == job


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"speakers": 2}, {"speakers": "only applies with diarize: true"}),
        ({"diarize": False, "min_speakers": 2}, {"min_speakers": "only applies with diarize: true"}),
        (
            {"min_speakers": 2, "max_speakers": 3},
            {"min_speakers": "only applies with diarize: true", "max_speakers": "only applies with diarize: true"},
        ),
        (
            {"diarize": "yes", "speakers": 2},  # a bad diarize is no diarize: both are named
            {"diarize": "Input should be a valid boolean", "speakers": "only applies with diarize: true"},
        ),
        (
            {"diarize": True, "speakers": 2, "max_speakers": 3},
            {"max_speakers": "give either speakers or min_speakers/max_speakers"},
        ),
        (
            {"diarize": True, "speakers": 2, "min_speakers": 1, "max_speakers": 3},
            {
                "min_speakers": "give either speakers or min_speakers/max_speakers",
                "max_speakers": "give either speakers or min_speakers/max_speakers",
            },
        ),
        (
            {"diarize": True, "min_speakers": 4, "max_speakers": 3},
            {"max_speakers": "max_speakers 3 is below min_speakers 4"},
        ),
        ({"diarize": True, "speakers": 0}, {"speakers": "Input should be greater than or equal to 1"}),
        ({"diarize": True, "max_speakers": 33}, {"max_speakers": "Input should be less than or equal to 32"}),
        ({"diarize": True, "min_speakers": "2"}, {"min_speakers": "Input should be a valid integer"}),
        ({"diarize": True, "speakers": True}, {"speakers": "Input should be a valid integer"}),
        (
            {"diarize": True, "speakers": 2.5},
            {"speakers": "Input should be a valid integer"},  # strict: 2.5 is no integer
        ),
    ],
)
def test_speaker_rules_name_the_field(fields: dict[str, Any], errors: dict[str, str]) -> None:
    err = rejected(body(**fields))
    assert {item["field"]: item["message"] for item in err.errors} == errors
    for field, message in errors.items():
        assert f"{field}: {message}" in str(err)


def test_speaker_fields_are_not_in_the_legacy_shape() -> None:
    err = rejected(json.dumps({**LEGACY, "diarize": True}))
    assert err.errors == [{"field": "diarize", "message": "unknown field 'diarize'"}]


# ------------------------------------------------------------------------------------------ schema


def test_json_schema() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "whisper-batch job message v1"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"job_id", "audio"}
    props = schema["properties"]
    assert set(props) == {
        "version",
        "job_id",
        "audio",
        "model",
        "formats",
        "language",
        "task",
        "word_timestamps",
        "initial_prompt",
        "beam_size",
        "diarize",
        "speakers",
        "min_speakers",
        "max_speakers",
        "vad",
        "subtitles",
        "callback_url",
        "callback_shape",
        "progress_callback",
        "metadata",
    }
    assert all(prop.get("description") for prop in props.values())
    assert props["job_id"]["pattern"] == "^[A-Za-z0-9_-]{1,128}$"
    assert "large-v3-turbo" in props["model"]["description"]
    assert props["formats"]["items"]["enum"] == ["json", "srt", "vtt", "txt", "tsv"]
    assert props["diarize"] == {"default": False, "description": props["diarize"]["description"], "title": "Diarize",
                                "type": "boolean"}  # fmt: skip
    for name in ("speakers", "min_speakers", "max_speakers"):
        assert props[name]["anyOf"] == [{"maximum": 32, "minimum": 1, "type": "integer"}, {"type": "null"}]
        assert "diarize: true" in props[name]["description"]
    assert json.loads(json.dumps(schema)) == schema


@pytest.mark.parametrize(
    ("fields", "valid"),
    [
        ({"diarize": True, "speakers": 2}, True),
        ({"diarize": True, "min_speakers": 2, "max_speakers": 5}, True),
        ({"speakers": None, "max_speakers": None}, True),
        ({"speakers": 2}, False),
        ({"diarize": False, "min_speakers": 2}, False),
        ({"diarize": True, "speakers": 2, "max_speakers": 3}, False),
        ({"diarize": True, "speakers": 2, "min_speakers": 1}, False),
        # Comparing two values is beyond JSON Schema: only parse_message rejects min > max.
        ({"diarize": True, "min_speakers": 4, "max_speakers": 3}, True),
    ],
)
def test_json_schema_states_the_speaker_rules(fields: dict[str, Any], valid: bool) -> None:
    from jsonschema import Draft202012Validator

    message = json.loads(body(**fields))
    assert Draft202012Validator(json_schema()).is_valid(message) is valid
    if not valid:
        rejected(json.dumps(message))


def test_contract_imports_no_heavy_dependencies() -> None:
    code = (
        "import sys, worker.contract; "
        "heavy = [m for m in ('torch', 'whisper', 'boto3', 'botocore', 'numpy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
