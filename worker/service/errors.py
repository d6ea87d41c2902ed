"""What can go wrong with a job, and what that means for its message.

    JobError
    ├── PermanentError            retrying cannot help: failed result + callback, message to the DLQ now
    │   ├── InvalidMessage        invalid_message     body is not JSON or breaks the contract
    │   ├── UnknownModel          unknown_model       no such model, or its weights are not available
    │   ├── BlockedUrl            blocked_url         scheme not allowed, or host resolves to a private address
    │   ├── AudioNotFound         audio_not_found     object or URL answers "not found" / "forbidden"
    │   ├── EmptyAudio            empty_audio         zero bytes
    │   ├── AudioTooLarge         audio_too_large     more bytes than the download cap
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

Only the class decides a message's fate; ``code`` is the stable name backends see.
"""

from __future__ import annotations

from worker.ops.redact import redact


class JobError(Exception):
    code = "internal_error"
    permanent = False

    def __init__(self, message: str) -> None:
        message = redact(message)  # the message reaches result.json, callbacks and the DLQ: no presigned URLs
        super().__init__(message)
        self.message = message


class PermanentError(JobError):
    permanent = True


class TransientError(JobError):
    code = "transient_error"


class InvalidMessage(PermanentError):
    code = "invalid_message"


class UnknownModel(PermanentError):
    code = "unknown_model"


class BlockedUrl(PermanentError):
    code = "blocked_url"


class AudioNotFound(PermanentError):
    code = "audio_not_found"


class EmptyAudio(PermanentError):
    code = "empty_audio"


class AudioTooLarge(PermanentError):
    code = "audio_too_large"


class AudioTooLong(PermanentError):
    code = "audio_too_long"


class UndecodableAudio(PermanentError):
    code = "undecodable_audio"


class DecoderCrashed(PermanentError):
    """The decoder's child process (worker/audio/isolated.py) died of a signal or exited, on a fresh one too."""

    code = "decoder_crashed"


class DecoderOutOfMemory(PermanentError):
    """Decoding the file passed the child's memory limit, or the child was SIGKILLed (the OOM killer), twice."""

    code = "decoder_out_of_memory"


class DecoderTimeout(PermanentError):
    """Decoding the file did not finish by its deadline, twice; each time the child was killed."""

    code = "decoder_timeout"


class WorkerLost(PermanentError):
    """Never raised by a worker: the code the settler (``worker.client.settle``, the settle Lambda) gives a message
    whose last worker died holding it (spot reclaim, native crash, OOM kill) before writing any result."""

    code = "worker_lost"


class FetchUnavailable(TransientError):
    code = "fetch_unavailable"


class StoreUnavailable(TransientError):
    code = "store_unavailable"


class ResourceExhausted(TransientError):
    code = "resource_exhausted"


class EngineFailed(TransientError):
    code = "engine_failed"


class EngineTimeout(TransientError):
    code = "engine_timeout"


class DecoderUnavailable(TransientError):
    code = "decoder_unavailable"


class DiarizationFailed(TransientError):
    code = "diarization_failed"


class WorkerUnfit(RuntimeError):
    """Not a job's error: the worker cannot do any job (no usable device, the default model does not load), so it
    exits before its first receive instead of charging messages a try."""
