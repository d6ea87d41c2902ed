"""The job message contract, shared by the worker, the clients and the stack; pydantic and the standard library
only, never torch, whisper, numpy or boto3.

    message.py     JobRequest (version 1 and the legacy camelCase shape), parse_message, json_schema
    languages.py   the languages Whisper knows and the names transcribe() accepts for them
    salvage.py     job id, callback URL and metadata of a broken body, standard library only (the settle Lambda)
    result.py      result.json and the callback payload made from it, standard library only
"""

from worker.contract.message import (
    CONTRACT_VERSION,
    JOB_ID_PATTERN,
    MAX_MESSAGE_BYTES,
    MAX_METADATA_BYTES,
    MAX_URL_LENGTH,
    OFFICIAL_MODELS,
    OUTPUT_FORMATS,
    ContractError,
    JobRequest,
    OutputFormat,
    Subtitles,
    Vad,
    best_effort_ids,
    is_job_id,
    is_legacy_body,
    json_schema,
    parse_message,
)

__all__ = [
    "CONTRACT_VERSION",
    "JOB_ID_PATTERN",
    "MAX_MESSAGE_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_URL_LENGTH",
    "OFFICIAL_MODELS",
    "OUTPUT_FORMATS",
    "ContractError",
    "JobRequest",
    "OutputFormat",
    "Subtitles",
    "Vad",
    "best_effort_ids",
    "is_job_id",
    "is_legacy_body",
    "json_schema",
    "parse_message",
]
