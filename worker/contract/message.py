"""The job message contract: what a backend puts in the body of an SQS message.

Version 1 is a flat JSON object (see ``JobRequest``); the legacy camelCase shape that older
backends send (``transcriptionId``/``s3AudioUrl``/...) is accepted and mapped onto it.

    parse_message(body)   -> JobRequest, or raises ContractError naming the offending field(s)
    best_effort_ids(body) -> (job_id, callback_url, metadata) from a broken message, never raises (``salvage.py``)
    json_schema()         -> JSON Schema (draft 2020-12) of the v1 message

This module is imported by lightweight clients as well as by the worker, so it depends on
pydantic and the standard library only: never import torch, whisper, boto3 or numpy here.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from worker.aws import SQS_MAX_MESSAGE_BYTES
from worker.contract.languages import language_code
from worker.contract.salvage import (
    JOB_ID_CHARS,
    LEGACY_MARKERS,
    MAX_METADATA_BYTES,
    MAX_URL_LENGTH,
    check_http_url,
    metadata_size,
)
from worker.contract.salvage import best_effort_ids as best_effort_ids  # re-exported: read without pydantic
from worker.contract.salvage import is_job_id as is_job_id
from worker.contract.salvage import is_legacy_body as is_legacy_body

CONTRACT_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = SQS_MAX_MESSAGE_BYTES
MAX_PROMPT_CHARS: Final = 1000
MAX_SPEAKERS: Final = 32  # a bound on clustering, far above any meeting a transcript is read for

# The job id names the result folder; the pattern (``salvage.JOB_ID_CHARS``) is also the path-traversal guard.
JOB_ID_PATTERN: Final = f"^{JOB_ID_CHARS}$"
MODEL_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{0,63}$"
LANGUAGE_PATTERN: Final = r"^[a-z]{2,3}$|^[a-z ]{4,20}$"

OFFICIAL_MODELS: Final[tuple[str, ...]] = (
    "tiny",
    "tiny.en",
    "base",
    "base.en",
    "small",
    "small.en",
    "medium",
    "medium.en",
    "large-v1",
    "large-v2",
    "large-v3",
    "large",
    "large-v3-turbo",
    "turbo",
)

OutputFormat = Literal["json", "srt", "vtt", "txt", "tsv"]
OUTPUT_FORMATS: Final[tuple[str, ...]] = get_args(OutputFormat)

SCHEMA_TITLE: Final = "whisper-batch job message v1"
SCHEMA_ID: Final = "urn:whisper-batch:job-message:v1"
SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

_S3_BUCKET_RE = re.compile(r"[A-Za-z0-9._-]{1,255}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

# Legacy camelCase keys -> v1 field names (``userId`` goes into metadata).
_LEGACY_MARKERS: Final = LEGACY_MARKERS
_LEGACY_KEYS: Final = frozenset(
    {"transcriptionId", "userId", "s3AudioUrl", "model", "format", "callbackUrl", "metadata"}
)
_LEGACY_FIELD_NAMES: Final = {
    "job_id": "transcriptionId",
    "audio": "s3AudioUrl",
    "formats": "format",
    "callback_url": "callbackUrl",
}

_MAX_REPORTED_ERRORS = 20


class ContractError(ValueError):
    """A message body that breaks the contract.

    ``str(err)`` is one line naming every offending field; ``errors`` holds the same as
    ``[{"field": "job_id", "message": "..."}]`` (``field`` is ``"body"`` for problems with the
    body as a whole: size, encoding, JSON syntax, not an object).
    """

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors: list[dict[str, str]] = errors if errors is not None else [{"field": "body", "message": message}]

    @classmethod
    def body(cls, message: str) -> ContractError:
        return cls(message, [{"field": "body", "message": message}])

    @classmethod
    def from_items(cls, items: list[dict[str, str]]) -> ContractError:
        parts = [_render_item(item) for item in items[:_MAX_REPORTED_ERRORS]]
        if len(items) > _MAX_REPORTED_ERRORS:
            parts.append(f"(and {len(items) - _MAX_REPORTED_ERRORS} more errors)")
        return cls("; ".join(parts), items)


def _render_item(item: dict[str, str]) -> str:
    # "unknown field 'foo'" already names its field; everything else reads "field: message".
    if item["message"].startswith("unknown field "):
        return item["message"]
    return f"{item['field']}: {item['message']}"


def _short(value: str, limit: int = 64) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------- URLs


def _url_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("url", message)


def _check_http_url(value: str) -> str:
    """An absolute http(s) URL with a host; returns it with the scheme lower-cased."""
    try:
        return check_http_url(value)
    except ValueError as exc:
        raise _url_error(str(exc)) from None


def _check_audio_url(value: str) -> str:
    """``s3://bucket/key`` or an http(s) URL (scheme policy is the worker's business)."""
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("s3", "http", "https"):
        raise _url_error("must be an s3://bucket/key, https:// or http:// URL")
    if scheme != "s3":
        return _check_http_url(value)
    if _CONTROL_RE.search(value):
        raise _url_error("URL must not contain control characters")
    bucket, slash, key = rest.partition("/")
    if not bucket:
        raise _url_error("s3 URL must name a bucket: s3://bucket/key")
    if not _S3_BUCKET_RE.fullmatch(bucket):
        raise _url_error("s3 bucket name may only contain letters, digits, '.', '_' and '-'")
    if not slash or not key:
        raise _url_error("s3 URL must have a non-empty key: s3://bucket/key")
    return "s3://" + rest


_metadata_size = metadata_size


# -------------------------------------------------------------------------------------------- model

JobId = Annotated[StrictStr, Field(pattern=JOB_ID_PATTERN)]


def _speaker_count(description: str) -> Any:
    """An optional speaker count, 1 to MAX_SPEAKERS."""
    return Field(default=None, ge=1, le=MAX_SPEAKERS, description=description)


def _null(field: str) -> dict[str, Any]:
    return {"properties": {field: {"type": "null"}}}


_DIARIZED: Final[dict[str, Any]] = {"required": ["diarize"], "properties": {"diarize": {"const": True}}}
_DIARIZED_WITHOUT_SPEAKERS: Final[dict[str, Any]] = {
    "required": ["diarize"],
    "properties": {"diarize": {"const": True}, "speakers": {"type": "null"}},
}
# The speaker rules of ``_speaker_bounds`` that JSON Schema can say, so the HTTPS API (draft 4 ``dependencies``,
# see infra/schema.py) and the Node client reject them too. A speaker field given as null is "not given", as in
# the validator, hence "null, or ..." rather than keying on presence alone. ``max_speakers >= min_speakers``
# compares two values, which no JSON Schema draft can express: only the worker (and the clients' parse) enforce it.
_SPEAKER_RULES: Final[dict[str, Any]] = {
    "dependentSchemas": {
        "speakers": {"anyOf": [_null("speakers"), _DIARIZED]},
        "min_speakers": {"anyOf": [_null("min_speakers"), _DIARIZED_WITHOUT_SPEAKERS]},
        "max_speakers": {"anyOf": [_null("max_speakers"), _DIARIZED_WITHOUT_SPEAKERS]},
    }
}


SpeakerLabels = Literal["changes", "every_cue", "none"]


class Subtitles(BaseModel):
    """How SRT and WebVTT cues are cut and timed (broadcast-style defaults); JSON, TSV and TXT ignore it."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Subtitles")

    style: Literal["readable", "segments"] = Field(
        default="readable",
        description=(
            "readable: cues built from word timings to the limits below; segments: one cue per Whisper segment, "
            "exactly as earlier versions wrote them (the other subtitle options are then ignored)."
        ),
    )
    max_line_width: StrictInt = Field(default=42, ge=10, le=200, description="Most characters on one line.")
    max_line_count: StrictInt = Field(default=2, ge=1, le=4, description="Most lines in one cue.")
    min_duration: StrictFloat = Field(
        default=1.0, ge=0.0, le=10.0, description="Shortest time a cue stays on screen, seconds."
    )
    max_duration: StrictFloat = Field(
        default=7.0, ge=1.0, le=30.0, description="Longest time a cue stays on screen, seconds."
    )
    max_chars_per_second: StrictFloat = Field(
        default=20.0,
        gt=0.0,
        le=100.0,
        description="Reading speed, characters a second: a cue stays on screen (into the pause after it) that long.",
    )
    min_gap: StrictFloat = Field(default=0.08, ge=0.0, le=1.0, description="Least time between two cues, seconds.")
    speaker_labels: SpeakerLabels | None = Field(
        default=None,
        description=(
            "Visible speaker names in diarized subtitles: changes (a cue where the speaker changes), every_cue, or "
            "none. null: every_cue in SRT, which has no markup for voices, so the text is the only place a player "
            "shows who speaks; none in WebVTT, whose voice spans (<v SPEAKER_00>) name the speaker of every cue."
        ),
    )
    highlight_words: StrictBool = Field(
        default=False,
        description="Underline each word while it is spoken (karaoke style): one cue per word in SRT and WebVTT.",
    )

    @model_validator(mode="after")
    def _durations(self) -> Subtitles:
        if self.min_duration > self.max_duration:
            raise ValueError("min_duration must not exceed max_duration")
        return self


class Vad(BaseModel):
    """Voice activity detection's tunables; omitted fields take their defaults (faster-whisper's)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Vad")

    threshold: StrictFloat = Field(
        default=0.5, gt=0.0, lt=1.0, description="Speech probability from which a 32 ms chunk counts as speech."
    )
    min_speech_ms: StrictInt = Field(
        default=250, ge=0, le=10_000, description="Shorter bursts of speech are ignored, milliseconds."
    )
    min_silence_ms: StrictInt = Field(
        default=2000, ge=0, le=60_000, description="A pause this long ends a stretch of speech, milliseconds."
    )
    speech_pad_ms: StrictInt = Field(
        default=400, ge=0, le=5_000, description="Audio kept on each side of every stretch of speech, milliseconds."
    )


class JobRequest(BaseModel):
    """One transcription job: the JSON body of an SQS message (contract version 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title=SCHEMA_TITLE, json_schema_extra=_SPEAKER_RULES)

    version: Literal[1] = Field(
        default=1,
        description="Contract version; always 1. Optional, defaults to 1.",
    )
    job_id: JobId = Field(
        description=(
            "Caller's id for the job, 1-128 ASCII letters, digits, '_' or '-'. Results are written "
            "under results/<job_id>/ and it is echoed in the result and callback."
        ),
    )
    audio: StrictStr = Field(
        max_length=MAX_URL_LENGTH,
        description=(
            "Where to fetch the audio: s3://bucket/key, or an https:// (or http://, if the worker allows it) URL."
        ),
    )
    model: StrictStr | None = Field(
        default=None,
        pattern=MODEL_PATTERN,
        description=(
            "Whisper model name, case-insensitive; null means the worker's configured default. "
            f"Official models: {', '.join(OFFICIAL_MODELS)}. A worker may also serve custom names."
        ),
    )
    formats: list[OutputFormat] = Field(
        default_factory=lambda: ["json"],
        min_length=1,
        description=(
            'Transcript formats to write, case-insensitive, duplicates dropped; at least one. Defaults to ["json"].'
        ),
    )
    language: StrictStr | None = Field(
        default=None,
        pattern=LANGUAGE_PATTERN,
        description=(
            "Spoken language as a 2-3 letter code (en, de, haw) or a Whisper language name "
            "(english), case-insensitive, one of the languages Whisper knows (names are stored as codes); "
            "null means detect it."
        ),
    )
    task: Literal["transcribe", "translate"] = Field(
        default="transcribe",
        description="transcribe: text in the spoken language; translate: English translation.",
    )
    word_timestamps: StrictBool = Field(
        default=False,
        description="Whether to compute per-word timings.",
    )
    initial_prompt: StrictStr | None = Field(
        default=None,
        max_length=MAX_PROMPT_CHARS,
        description=(
            f"Text to condition the first window on (spellings, names, style); at most {MAX_PROMPT_CHARS} characters."
        ),
    )
    beam_size: StrictInt | None = Field(
        default=None,
        ge=1,
        le=10,
        description="Beam search width, 1-10; null means the worker's default decoding.",
    )
    diarize: StrictBool = Field(
        default=False,
        description=(
            "Whether to label who spoke when: each segment (and word) gets a speaker such as SPEAKER_00, numbered "
            "in order of first appearance, and the result lists each speaker's talk time."
        ),
    )
    speakers: StrictInt | None = _speaker_count(
        f"Exact number of speakers, 1-{MAX_SPEAKERS}, when known; needs diarize: true and excludes "
        "min_speakers and max_speakers. null means estimate it."
    )
    min_speakers: StrictInt | None = _speaker_count(f"Fewest speakers to find, 1-{MAX_SPEAKERS}; needs diarize: true.")
    max_speakers: StrictInt | None = _speaker_count(
        f"Most speakers to label, 1-{MAX_SPEAKERS}, at least min_speakers; needs diarize: true. More voices "
        "than this are merged into the closest labels."
    )
    vad: StrictBool | Vad = Field(
        default=True,
        description=(
            "Voice activity detection: only stretches where someone speaks are transcribed, so silence, noise, hum "
            "and music give no invented words, and result.json reports the seconds of speech found. true (the "
            "default) or an object of tunables turns it on; false transcribes every second of the audio."
        ),
    )
    subtitles: Subtitles = Field(
        default_factory=Subtitles,
        description=(
            "How SRT and WebVTT cues are cut and timed; omitted fields take their defaults. Readable cues are cut at "
            "word timings, which the engine computes for them whatever word_timestamps says (JSON, TSV and TXT show "
            "words only when word_timestamps is true)."
        ),
    )
    callback_url: StrictStr | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        description="http(s) URL to POST a signed notification to when the job succeeds or fails.",
    )
    callback_shape: Literal["v1", "legacy"] = Field(
        default="v1",
        description=(
            "The callback's shape: v1, or legacy, which adds what backends built on the legacy job shape read "
            "(transcriptionId, userId, status COMPLETED/FAILED, s3ResultUrl, durationSeconds, processingTime, "
            "and error as a message). Jobs sent in the legacy shape get legacy."
        ),
    )
    progress_callback: StrictBool = Field(
        default=False,
        description=(
            "Whether to also POST a signed progress event to callback_url at each state change "
            '({"job_id", "event": "progress", "state", "percent"}).'
        ),
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            f"Free-form JSON object echoed back in the result and callback; at most "
            f"{MAX_METADATA_BYTES} bytes as UTF-8 JSON."
        ),
    )

    # -- legacy camelCase shape -------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _from_legacy(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(key in data for key in _LEGACY_MARKERS):
            return data
        unknown = [key for key in data if key not in _LEGACY_KEYS]
        if unknown:
            raise ValidationError.from_exception_data(
                cls.__name__,
                [InitErrorDetails(type="extra_forbidden", loc=(key,), input=data[key]) for key in unknown],
            )
        mapped: dict[str, Any] = {}
        if "transcriptionId" in data:
            mapped["job_id"] = data["transcriptionId"]
        if "s3AudioUrl" in data:
            mapped["audio"] = data["s3AudioUrl"]
        if "model" in data:
            mapped["model"] = data["model"]
        if "format" in data:
            fmt = data["format"]
            mapped["formats"] = [fmt] if isinstance(fmt, str) else fmt
        if "callbackUrl" in data:
            mapped["callback_url"] = data["callbackUrl"]
        metadata = data.get("metadata")
        if "userId" in data and (metadata is None or isinstance(metadata, dict)):
            metadata = {**(metadata or {}), "userId": data["userId"]}
        if metadata is not None or "metadata" in data:
            mapped["metadata"] = metadata
        mapped["callback_shape"] = "legacy"
        return mapped

    # -- fields -----------------------------------------------------------------------------------

    @field_validator("audio")
    @classmethod
    def _valid_audio(cls, value: str) -> str:
        return _check_audio_url(value)

    @field_validator("callback_url")
    @classmethod
    def _valid_callback(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)

    @field_validator("version", mode="before")
    @classmethod
    def _strict_version(cls, value: Any) -> Any:
        # Literal[1] alone would take true and 1.0; only the JSON integer 1 is version 1.
        if type(value) is not int:
            raise PydanticCustomError("literal_error", "Input should be 1")
        return value

    @field_validator("model", "language", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = language_code(value)
        if code is None:
            raise PydanticCustomError(
                "unsupported_language",
                "{value!r} is not a language Whisper knows; use a code such as en, de, haw or a name such as german",
                {"value": _short(value)},
            )
        return code

    @field_validator("speakers", "min_speakers", "max_speakers")
    @classmethod
    def _speaker_bounds(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return None
        if info.data.get("diarize") is not True:
            raise PydanticCustomError("needs_diarize", "only applies with diarize: true")
        if info.field_name != "speakers" and info.data.get("speakers") is not None:
            raise PydanticCustomError("speakers_exclusive", "give either speakers or min_speakers/max_speakers")
        low = info.data.get("min_speakers")
        if info.field_name == "max_speakers" and low is not None and value < low:
            raise PydanticCustomError(
                "speakers_range", "max_speakers {high} is below min_speakers {low}", {"high": value, "low": low}
            )
        return value

    @field_validator("formats", mode="before")
    @classmethod
    def _lower_formats(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [item.lower() if isinstance(item, str) else item for item in value]
        return value

    @field_validator("formats")
    @classmethod
    def _dedupe_formats(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            size = _metadata_size(value)
        except ValueError as exc:
            raise PydanticCustomError("metadata", str(exc)) from None
        if size > MAX_METADATA_BYTES:
            raise PydanticCustomError(
                "metadata_too_large",
                "JSON encoding is {size} bytes, more than the {limit} allowed",
                {"size": size, "limit": MAX_METADATA_BYTES},
            )
        return value


# ------------------------------------------------------------------------------------------ parsing


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {_short(key)!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _decode(body: str | bytes) -> str:
    if isinstance(body, bytearray | memoryview):
        body = bytes(body)
    if isinstance(body, bytes):
        if len(body) > MAX_MESSAGE_BYTES:
            raise ContractError.body(f"body is {len(body)} bytes, more than the {MAX_MESSAGE_BYTES} allowed")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError.body(f"body is not valid UTF-8 (byte {exc.start})") from None
    if isinstance(body, str):
        try:
            size = len(body) if len(body) > MAX_MESSAGE_BYTES else len(body.encode("utf-8"))
        except UnicodeEncodeError:
            raise ContractError.body("body is not valid UTF-8 (lone surrogate)") from None
        if size > MAX_MESSAGE_BYTES:
            raise ContractError.body(f"body is {size} bytes, more than the {MAX_MESSAGE_BYTES} allowed")
        return body
    raise ContractError.body(f"body must be str or bytes, not {type(body).__name__}")


def _field_name(loc: tuple[int | str, ...], legacy: bool) -> str:
    parts = [str(part) for part in loc]
    if not parts:
        return "body"
    if legacy:
        parts[0] = _LEGACY_FIELD_NAMES.get(parts[0], parts[0])
        if parts[0] == "format" and len(parts) == 2:  # the single legacy format was wrapped in a list
            parts = ["format"]
    return ".".join(_short(part) for part in parts)


def _error_items(exc: ValidationError, legacy: bool) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    for err in exc.errors(include_url=False):
        unknown = err["type"] == "extra_forbidden"
        field = _field_name(err["loc"], legacy and not unknown)  # an unknown key keeps its own name
        message = f"unknown field {field!r}" if unknown else err["msg"].removeprefix("Value error, ")
        items.append({"field": field, "message": message})
    return items


def parse_message(body: str | bytes) -> JobRequest:
    """Validate an SQS message body and return the job; ContractError on any failure.

    The body must be at most MAX_MESSAGE_BYTES of strict UTF-8 holding one JSON object with no
    duplicate keys and no NaN/Infinity, in the v1 shape or the legacy camelCase shape.
    """
    text = _decode(body)
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except RecursionError:
        raise ContractError.body("body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, duplicate keys, NaN
        raise ContractError.body(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError.body(f"body must be a JSON object, not {_json_type(data)}")
    legacy = any(key in data for key in _LEGACY_MARKERS)
    bad_unicode = [key for key, value in data.items() if not _utf8_encodable(key, value)]
    if bad_unicode:
        raise ContractError.from_items(
            [
                {
                    "field": _field_name((key,), False),
                    "message": "contains a lone UTF-16 surrogate escape (not valid Unicode)",
                }
                for key in bad_unicode
            ]
        )
    try:
        return JobRequest.model_validate(data)
    except ValidationError as exc:
        raise ContractError.from_items(_error_items(exc, legacy)) from None


def _utf8_encodable(key: str, value: Any) -> bool:
    try:
        json.dumps({key: value}, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    except (RecursionError, TypeError, ValueError):
        return True  # not a Unicode problem: left to the field's own validation
    return True


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


# ------------------------------------------------------------------------------------------ schema


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the v1 message; the legacy shape is not described."""
    schema = JobRequest.model_json_schema()
    schema["title"] = SCHEMA_TITLE
    schema["$id"] = SCHEMA_ID
    return {"$schema": SCHEMA_DIALECT, **schema}
