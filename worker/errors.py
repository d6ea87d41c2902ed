"""What can go wrong with a job, and what that means for its message: a leaf every layer imports.

    JobError
    ├── PermanentError            retrying cannot help: failed result + callback, message to the DLQ now
    │   ├── InvalidMessage        invalid_message     body is not JSON or breaks the contract
    │   ├── UnknownModel          unknown_model       no such model, or its weights are not available
    │   ├── BlockedUrl            blocked_url         scheme not allowed, or host resolves to a private address
    │   ├── AudioNotFound         audio_not_found     object or URL answers "not found" / "forbidden"
    │   ├── EmptyAudio            empty_audio         zero bytes
    │   ├── AudioTooLarge         audio_too_large     more bytes than the download cap
    │   ├── FetchTooSlow          fetch_too_slow      the download outran its overall deadline (a trickling source)
    │   ├── AudioTooLong          audio_too_long      longer than the duration cap
    │   ├── UndecodableAudio      undecodable_audio   no audio stream PyAV can decode
    │   ├── DecoderCrashed        decoder_crashed     the decoder's process died on the file twice (signal or exit code)
    │   ├── DecoderOutOfMemory    decoder_out_of_memory  ... passed its memory limit twice (WHISPER_DECODER_MEMORY_MB)
    │   ├── DecoderTimeout        decoder_timeout     the decoder's process missed its deadline on the file twice
    │   └── WorkerLost            worker_lost         its last worker died holding it (set by the settler, not raised)
    └── TransientError            may pass: message left on the queue, redelivered after a backoff
        ├── FetchUnavailable      fetch_unavailable   throttling, 5xx, timeouts, resets while fetching audio
        ├── StoreUnavailable      store_unavailable   S3 refused or failed to write results
        ├── ResourceExhausted     resource_exhausted  out of (GPU) memory
        ├── EngineFailed          engine_failed       a forward pass or the engine's model thread raised
        ├── EngineTimeout         engine_timeout      the engine did not finish the job by its deadline
        ├── DecoderUnavailable    decoder_unavailable a decoder process did not start (before it saw the file)
        └── DiarizationFailed     diarization_failed  the diarizer did not load, raised, or missed its deadline

    WorkerUnfit                   not a job's: the worker cannot do any job and exits before its first receive
    SettingsError                 not a job's: a WHISPER_* variable is missing or malformed

Only the class decides a message's fate; ``code`` is the stable name backends see.
``when`` says in one line what raises it: docs/reference/failure-codes.md is generated from these classes
(``python -m scripts.docs_reference``), so a new class needs one.
"""

from __future__ import annotations

from worker.ops.redact import redact

__all__ = [
    "AudioNotFound",
    "AudioTooLarge",
    "AudioTooLong",
    "BlockedUrl",
    "DecoderCrashed",
    "DecoderOutOfMemory",
    "DecoderTimeout",
    "DecoderUnavailable",
    "DiarizationFailed",
    "EmptyAudio",
    "EngineFailed",
    "EngineTimeout",
    "FetchTooSlow",
    "FetchUnavailable",
    "InvalidMessage",
    "JobError",
    "PermanentError",
    "ResourceExhausted",
    "SettingsError",
    "StoreUnavailable",
    "TransientError",
    "UndecodableAudio",
    "UnknownModel",
    "WorkerLost",
    "WorkerUnfit",
]


class JobError(Exception):
    code = "internal_error"
    when = "an unexpected error in the worker"
    permanent = False

    def __init__(self, message: str) -> None:
        message = redact(message)  # the message reaches result.json, callbacks and the DLQ: no presigned URLs
        super().__init__(message)
        self.message = message


class PermanentError(JobError):
    """Retrying cannot help: the worker writes a failed result, sends the failure callback and moves the message
    to the DLQ at once."""

    permanent = True


class TransientError(JobError):
    """It may pass: the message stays on the queue and comes back after an exponential backoff; its last allowed
    receive writes the failed result and sends the failure callback, then SQS moves it to the DLQ."""

    code = "transient_error"
    when = "a passing failure no narrower code names; the message is retried"


class InvalidMessage(PermanentError):
    code = "invalid_message"
    when = (
        "the body is not UTF-8 JSON, breaks the contract, or asks a model for what it cannot do (translate on"
        " an English-only model, a language the model does not know); checked before any audio is fetched"
    )


class UnknownModel(PermanentError):
    code = "unknown_model"
    when = "the model name is unknown or its weights are not available to the worker"


class BlockedUrl(PermanentError):
    code = "blocked_url"
    when = "the scheme is not allowed, the URL carries credentials, or the host resolves to a non-public address"


class AudioNotFound(PermanentError):
    code = "audio_not_found"
    when = "the object or URL answers not found / forbidden, or redirects"


class EmptyAudio(PermanentError):
    code = "empty_audio"
    when = "the audio file has zero bytes"


class AudioTooLarge(PermanentError):
    code = "audio_too_large"
    when = "the audio has more bytes than `WHISPER_MAX_AUDIO_BYTES`"


class FetchTooSlow(PermanentError):
    code = "fetch_too_slow"
    when = (
        "the audio did not arrive within the whole download's deadline (`WHISPER_FETCH_TIMEOUT` plus 0.05 s per "
        "second of `WHISPER_MAX_AUDIO_SECONDS`): the source trickles; each read alone did not time out"
    )


class AudioTooLong(PermanentError):
    code = "audio_too_long"
    when = (
        "the audio is longer than `WHISPER_MAX_AUDIO_SECONDS`, or than the worker's whole decoded-audio "
        "budget (`WHISPER_MAX_DECODED_SECONDS`)"
    )


class UndecodableAudio(PermanentError):
    code = "undecodable_audio"
    when = "the file has no audio stream that can be decoded"


class DecoderCrashed(PermanentError):
    """The decoder's child process (worker/audio/isolated.py) died of a signal or exited, on a fresh one too."""

    code = "decoder_crashed"

    when = (
        "the decoder's child process died on the file (a signal such as SIGSEGV or SIGABRT, or an exit code),"
        " on a fresh process too; the message names the signal"
    )


class DecoderOutOfMemory(PermanentError):
    """Decoding the file passed the child's memory limit, or the child was SIGKILLed (the OOM killer), twice."""

    code = "decoder_out_of_memory"

    when = (
        "decoding the file passed the child's memory limit (`WHISPER_DECODER_MEMORY_MB`) or the child was "
        "SIGKILLed, twice"
    )


class DecoderTimeout(PermanentError):
    """Decoding the file did not finish by its deadline, twice; each time the child was killed."""

    code = "decoder_timeout"

    when = "decoding the file missed its deadline (`WHISPER_DECODER_TIMEOUT_*`) twice; each time the child was killed"


class WorkerLost(PermanentError):
    """Never raised by a worker: the code the settler (``worker.client.settle``, the settle Lambda) gives a message
    whose last worker died holding it (spot reclaim, native crash, OOM kill) before writing any result."""

    code = "worker_lost"

    when = (
        "set by the settler, not a worker: the last worker holding the message died (spot reclaim, crash, out"
        " of memory) before writing any result; the dead letter is settled with this code"
    )


class FetchUnavailable(TransientError):
    code = "fetch_unavailable"
    when = "throttling, 5xx, timeouts or resets while fetching the audio"


class StoreUnavailable(TransientError):
    code = "store_unavailable"
    when = "S3 failed to store the results"


class ResourceExhausted(TransientError):
    code = "resource_exhausted"
    when = "the GPU ran out of memory"


class EngineFailed(TransientError):
    code = "engine_failed"
    when = "a forward pass or the engine's model thread raised for this job"


class EngineTimeout(TransientError):
    code = "engine_timeout"
    when = "the engine did not finish the job by its deadline (`WHISPER_JOB_DEADLINE_*`)"


class DecoderUnavailable(TransientError):
    code = "decoder_unavailable"
    when = "a decoder child process did not start (before it saw the file)"


class DiarizationFailed(TransientError):
    code = "diarization_failed"
    when = "`diarize: true` and the diarizer did not load, raised, or missed the job's deadline"


class WorkerUnfit(RuntimeError):
    """Not a job's error: the worker cannot do any job (no usable device, the default model does not load), so it
    exits before its first receive instead of charging messages a try."""


class SettingsError(ValueError):
    """A variable is missing or malformed (``worker.service.settings`` reads them; ``WHISPER_ENGINE`` is checked in
    ``worker.engine.choose``)."""
