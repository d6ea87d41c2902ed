"""One message through every stage: parse → fetch → decode → transcribe → render → store → callback.

The processor decides what happened; the runner decides what that means for the message on the queue.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

from worker.audio import SAMPLE_RATE
from worker.audio.budget import AudioBudget, Reservation, decode_within_budget, default_budget_seconds
from worker.audio.decode import Decoder, InProcessDecoder
from worker.audio.isolated import DecoderPool, pool_size
from worker.contract import ContractError, JobRequest, best_effort_ids, is_legacy_body, parse_message
from worker.contract.result import CallbackRecord, ErrorInfo, JobResult, utc_timestamp
from worker.diarization import Diarizer, SpeakerBounds, Turn
from worker.diarization.attribute import attribute
from worker.diarization.choose import DiarizerFactory
from worker.engine import Engine
from worker.engine.gating import vad_options
from worker.engine.options import Cancelled, TranscribeOptions
from worker.errors import BlockedUrl, DiarizationFailed, InvalidMessage, JobError, TransientError
from worker.ops.logs import logger
from worker.service.callback import CallbackOutcome, CallbackSender
from worker.service.claim import CLAIM_FILE, ClaimHeld, ClaimStore, owner_name, same_message
from worker.service.fetch import fetched
from worker.service.netguard import check_url
from worker.service.progress import STATUS_FILE, ProgressReporter
from worker.service.render import SUBTITLE_FORMATS, needs_words, render, speaker_summary, without_words
from worker.service.settings import Settings
from worker.service.sqs import QueueMessage
from worker.service.store import ResultStore
from worker.transcript import Transcript
from worker.webhooks import result_event_id

Verdict = Literal["completed", "duplicate", "failed", "retry", "busy"]
# Below this much transcription progress an estimate of the time left is a guess: such a job counts as unknown.
MIN_PERCENT_TO_ESTIMATE = 5.0


class JobRevoked(Exception):
    """The runner handed this job's message back to the queue while it ran: it must write nothing more."""


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    job_id: str | None
    error: JobError | None = None
    retry_after: int | None = None  # for "busy": when the other worker's claim on the job runs out
    model: str | None = None
    audio_seconds: float | None = None  # for metrics: set when transcription finished
    processing_seconds: float | None = None


class Laps:
    """Wall time per stage of one job, in milliseconds, for its ``job completed`` log line, and the CPU time of
    the job's own thread, in all and per stage: the worker's work for the job outside the engine's and the
    diarizer's threads."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._cpu = self._last_cpu = time.thread_time()
        self.ms: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def cpu_ms(self) -> float:
        return round((time.thread_time() - self._cpu) * 1000, 1)

    def mark(self, stage: str) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        self.ms[stage] = round(self.ms.get(stage, 0.0) + (now - self._last) * 1000, 1)
        self.cpu[stage] = round(self.cpu.get(stage, 0.0) + (cpu - self._last_cpu) * 1000, 1)
        self._last, self._last_cpu = now, cpu


def request_fingerprint(request: JobRequest) -> str:
    """Same request, same fingerprint: a redelivered finished job is recognised and not transcribed again."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class JobProcessor:
    def __init__(
        self,
        *,
        settings: Settings,
        s3: Any,
        store: ResultStore,
        engine: Engine,
        callbacks: CallbackSender | None,
        progress_callbacks: CallbackSender | None = None,
        diarizers: DiarizerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.s3 = s3
        self.store = store
        self.engine = engine
        self.callbacks = callbacks
        # Progress events use a sender with few retries: a slow backend must not hold up the transcription.
        self.progress_callbacks = progress_callbacks or callbacks
        self.claims = ClaimStore(s3, store.bucket)
        # One budget of decoded audio for all messages in progress: each waits for room before decoding.
        self.audio_budget = AudioBudget(settings.max_decoded_seconds or default_budget_seconds())
        # Untrusted files are parsed in child processes, started on first use (see worker/audio/isolated.py).
        self.decoder: Decoder = InProcessDecoder()
        if settings.decoder_isolation:
            self.decoder = DecoderPool(
                pool_size(settings.concurrency),
                memory_mb=settings.decoder_memory_mb,
                timeout_seconds=settings.decoder_timeout_seconds,
                timeout_factor=settings.decoder_timeout_factor,
            )
        self.diarizers = diarizers or DiarizerFactory(settings.diarization_model, "cpu")
        # Diarization runs beside the engine, over the same decoded samples, one thread per message in progress.
        self._diarizing = concurrent.futures.ThreadPoolExecutor(settings.concurrency, thread_name_prefix="diarize")
        # Jobs in progress by message id, for a shutdown that must judge which ones end in time; a revoked job
        # was handed back and writes nothing more; a committed one is storing its results and is no longer revocable.
        self._jobs_lock = threading.Lock()
        self._in_progress: dict[str, tuple[ProgressReporter, str]] = {}  # message id -> (progress, claim key)
        self._cancels: dict[str, threading.Event] = {}  # message id -> set when revoked: the engine drops its work
        self._revoked: set[str] = set()
        self._committed: set[str] = set()

    def owner(self, message: QueueMessage) -> str:
        return owner_name(socket.gethostname(), os.getpid(), message.message_id)

    def last_holder_died(self, message: QueueMessage) -> bool:
        """Whether an earlier receive of this message left its claim behind: that holder stopped mid-job."""
        job_id = best_effort_ids(message.body)[0]
        if message.receive_count < 2 or job_id is None:
            return False
        holder = self.claims.holder(self.store.key(job_id, CLAIM_FILE))
        return holder is not None and same_message(holder, self.owner(message))

    def seconds_to_finish(self, message_id: str) -> float | None:
        """A guess at how long the job still needs, from its state and transcription progress; None: unknown."""
        with self._jobs_lock:
            entry = self._in_progress.get(message_id)
        if entry is None:
            return None
        state, percent, elapsed = entry[0].snapshot()
        if state in ("storing", "completed", "failed"):
            return 0.0
        if state == "transcribing" and percent is not None and percent >= MIN_PERCENT_TO_ESTIMATE:
            return elapsed * (100.0 - percent) / percent
        return None

    def revoke(self, message_id: str) -> bool:
        """Take the job back from its thread (its message is being released): False when it is already storing."""
        with self._jobs_lock:
            if message_id in self._committed:
                return False
            self._revoked.add(message_id)
            entry = self._in_progress.get(message_id)
            cancel = self._cancels.get(message_id)
        if cancel is not None:
            cancel.set()
        if entry is not None:
            self.claims.release_key(entry[1])  # the next worker need not wait for the lease
        return True

    def _commit(self, message: QueueMessage) -> None:
        with self._jobs_lock:
            if message.message_id in self._revoked:
                raise JobRevoked(message.message_id)
            self._committed.add(message.message_id)

    def _track(self, message: QueueMessage, progress: ProgressReporter | None, claim_key: str = "") -> None:
        with self._jobs_lock:
            if progress is None:
                self._in_progress.pop(message.message_id, None)
                self._committed.discard(message.message_id)
                self._revoked.discard(message.message_id)
                self._cancels.pop(message.message_id, None)
            else:
                self._in_progress[message.message_id] = (progress, claim_key)
                self._cancels[message.message_id] = threading.Event()

    def _cancel_event(self, message: QueueMessage) -> threading.Event | None:
        with self._jobs_lock:
            return self._cancels.get(message.message_id)

    def process(self, message: QueueMessage, *, max_receive_count: int | None) -> Outcome:
        try:
            request = parse_message(message.body)
        except ContractError as exc:
            return self._reject(message, exc)
        model = request.model or self.settings.default_model
        logger.thread_safe_append_keys(job_id=request.job_id, model=model)  # this job's thread only
        fingerprint = request_fingerprint(request)
        owner = self.owner(message)
        progress = self._progress(request, message)
        claim_key = self.store.key(request.job_id, CLAIM_FILE)
        self._track(message, progress, claim_key)
        try:
            return self._process(message, request, model, fingerprint, owner, progress, claim_key, max_receive_count)
        finally:
            self._track(message, None)

    def _process(
        self,
        message: QueueMessage,
        request: JobRequest,
        model: str,
        fingerprint: str,
        owner: str,
        progress: ProgressReporter,
        claim_key: str,
        max_receive_count: int | None,
    ) -> Outcome:
        started = time.monotonic()
        failed = functools.partial(
            self._failed,
            message,
            request,
            model,
            fingerprint,
            started=started,
            max_receive_count=max_receive_count,
            progress=progress,
        )
        laps = Laps()
        try:
            with self.claims.held(claim_key, owner, self.settings.visibility_timeout):
                previous = self.store.get_result(request.job_id)
                laps.mark("claim")
                if previous and previous.succeeded and previous.request_sha256 == fingerprint:
                    logger.info("job already completed; acknowledging duplicate delivery")
                    if previous.callback is None or not previous.callback.delivered:
                        # the first delivery never arrived, or its worker died between storing and sending it
                        self._notify(request, previous)
                    return Outcome("duplicate", request.job_id, model=model)
                if previous is not None:  # this run's status must supersede that result at once for pollers
                    progress.announce()
                try:
                    result = self._transcribe(request, model, message, fingerprint, started, progress, laps)
                except (JobRevoked, Cancelled):
                    logger.info("job handed back to the queue before it finished; writing nothing")
                    return Outcome("retry", request.job_id, model=model)
                except JobError as exc:
                    return failed(exc)  # reported while the claim is still ours
                except Exception as exc:  # a bug must not lose the message: treat it as transient
                    logger.exception("unexpected error")
                    error = TransientError(f"internal error: {type(exc).__name__}: {exc}")
                    error.code = "internal_error"
                    return failed(error)
        except ClaimHeld as held:
            logger.info("job is being processed elsewhere; retrying later", extra={"holder": held.owner})
            return Outcome("busy", request.job_id, retry_after=int(held.seconds_left) + 1, model=model)
        except JobError as exc:  # S3 unreachable while claiming or checking for a finished result
            return failed(exc)
        self._notify(request, result)
        return Outcome(
            "completed",
            request.job_id,
            model=model,
            audio_seconds=result.duration_seconds,
            processing_seconds=result.processing_seconds,
        )

    def _progress(self, request: JobRequest, message: QueueMessage) -> ProgressReporter:
        notify = None
        if request.progress_callback and request.callback_url:
            notify = functools.partial(self._send_progress, request, message)
        return ProgressReporter(
            s3=self.s3,
            bucket=self.store.bucket,
            key=self.store.key(request.job_id, STATUS_FILE),
            job_id=request.job_id,
            message_id=message.message_id,
            interval=self.settings.progress_interval,
            notify=notify,
        )

    def _transcribe(
        self,
        request: JobRequest,
        model: str,
        message: QueueMessage,
        fingerprint: str,
        started: float,
        progress: ProgressReporter,
        laps: Laps,
    ) -> JobResult:
        """The job's stages in order: check what can fail before any work, hear the audio, write the results."""
        options = self._options_checked(request, model)
        transcript = self._hear(request, model, options, message, progress, laps)
        self._commit(message)  # from here the job finishes here: a shutdown no longer hands it back
        return self._store_outputs(request, transcript, model, message, fingerprint, started, progress, laps)

    def _options_checked(self, request: JobRequest, model: str) -> TranscribeOptions:
        """The engine's options for ``request``, refused before any fetch when the URL policy, the model or the
        diarizer cannot serve them."""
        if request.audio.startswith("http://") and not self.settings.allow_http:
            raise BlockedUrl("audio URL must use https")
        options = TranscribeOptions(
            language=request.language,
            task=request.task,
            initial_prompt=request.initial_prompt,
            # readable subtitles are cut at word timings (the batched engines align them cheaply); JSON, TSV and TXT
            # show them only when asked for
            word_timestamps=request.word_timestamps or needs_words(request.formats, request.subtitles),
            beam_size=request.beam_size,
            vad=vad_options(request.vad),
        )
        self.engine.check(model, options)
        if request.diarize:
            self._diarizer()  # a diarizer that does not load fails the job here too
        return options

    def _hear(
        self,
        request: JobRequest,
        model: str,
        options: TranscribeOptions,
        message: QueueMessage,
        progress: ProgressReporter,
        laps: Laps,
    ) -> Transcript:
        """Fetch, decode within the audio budget, transcribe, and (beside the engine) diarize."""
        s = self.settings
        progress.state("fetching")
        decoded: Reservation | None = None
        diarizing: concurrent.futures.Future[list[Turn]] | None = None
        try:
            with fetched(
                request.audio,
                s3=self.s3,
                max_bytes=s.max_audio_bytes,
                timeout=s.fetch_timeout,
                allow_http=s.allow_http,
                allow_private=s.allow_private_urls,
                max_audio_seconds=s.max_audio_seconds,
            ) as path:
                laps.mark("fetch")
                progress.state("decoding")  # also while waiting for budget: progress has no "queued" state
                audio, decoded = decode_within_budget(
                    path, self.audio_budget, max_seconds=s.max_audio_seconds, decoder=self.decoder
                )
            laps.mark("decode")
            progress.state("transcribing", 0.0)
            if request.diarize:
                bounds = SpeakerBounds(request.speakers, request.min_speakers, request.max_speakers)
                diarizing = self._diarizing.submit(self._diarizer().diarize, audio, bounds)
            transcript = self.engine.transcribe(
                model, audio, options, progress=progress.percent, cancel=self._cancel_event(message)
            )
            laps.mark("transcribe")
            if diarizing is not None:
                transcript = attribute(transcript, self._turns(diarizing, len(audio) / SAMPLE_RATE))
                laps.mark("diarize")  # what diarization added after the engine was done
            return transcript
        finally:
            if diarizing is not None:  # its thread reads the samples until it returns, even for a failed job
                concurrent.futures.wait([diarizing], timeout=self._deadline(len(audio) / SAMPLE_RATE))
            if decoded is not None:  # the engine is done with the samples, whatever it returned
                decoded.release()

    def _store_outputs(
        self,
        request: JobRequest,
        transcript: Transcript,
        model: str,
        message: QueueMessage,
        fingerprint: str,
        started: float,
        progress: ProgressReporter,
        laps: Laps,
    ) -> JobResult:
        """Render every format, store each, then result.json, and log the completion with the stage timings."""
        progress.state("storing")
        bare = transcript if request.word_timestamps else without_words(transcript)
        rendered = {
            fmt: render(transcript if fmt in SUBTITLE_FORMATS else bare, fmt, request.subtitles)
            for fmt in request.formats
        }
        laps.mark("render")
        keys = {fmt: self.store.put_transcript(request.job_id, fmt, text) for fmt, text in rendered.items()}
        result = replace(
            self._result(request, model, message, fingerprint, started, status="completed", results=keys),
            language=transcript.language,
            duration_seconds=transcript.duration,
            text_preview=transcript.text[:200],
            speech_seconds=transcript.speech_seconds,
            speakers=speaker_summary(transcript),
        )
        # result.json goes last: its presence with status "completed" means every transcript is in place.
        self.store.put_result(request.job_id, result)
        progress.state("completed", 100.0)
        laps.mark("store")
        logger.info(
            "job completed",
            extra={
                "duration_seconds": transcript.duration,
                "processing_seconds": result.processing_seconds,
                "stages_ms": laps.ms,
                "cpu_ms": laps.cpu_ms(),
                "stages_cpu_ms": laps.cpu,
            },
        )
        return result

    def _diarizer(self) -> Diarizer:
        try:
            return self.diarizers.get()
        except Exception as exc:
            logger.exception("diarizer did not load")
            raise DiarizationFailed(f"speaker diarization is unavailable: {exc}") from exc

    def _deadline(self, audio_seconds: float) -> float:
        return self.settings.job_deadline_base_seconds + self.settings.job_deadline_factor * audio_seconds

    def _turns(self, diarizing: concurrent.futures.Future[list[Turn]], audio_seconds: float) -> list[Turn]:
        """The diarizer's turns; its failure fails the job rather than returning text without speakers."""
        try:
            return diarizing.result(timeout=self._deadline(audio_seconds))
        except concurrent.futures.TimeoutError:
            limit = self._deadline(audio_seconds)
            raise DiarizationFailed(f"speaker diarization did not finish within {limit:.0f} s") from None
        except Exception as exc:
            logger.exception("diarization failed")
            raise DiarizationFailed(f"speaker diarization failed: {type(exc).__name__}: {exc}") from exc

    def _result(
        self,
        request: JobRequest | None,
        model: str | None,
        message: QueueMessage,
        fingerprint: str | None,
        started: float,
        *,
        status: str,
        results: dict[str, str] | None = None,
        error: JobError | None = None,
        job_id: str | None = None,
        metadata: dict | None = None,
    ) -> JobResult:
        return JobResult(
            job_id=request.job_id if request else job_id,
            status=status,
            model=model,
            task=request.task if request else None,
            processing_seconds=round(time.monotonic() - started, 3),
            bucket=self.store.bucket,
            results=results or {},
            error=ErrorInfo(error.code, error.message) if error else None,
            metadata=request.metadata if request else (metadata or {}),
            request_sha256=fingerprint,
            message_id=message.message_id,
            attempt=message.receive_count,
            finished_at=utc_timestamp(),
        )

    def _failed(
        self,
        message: QueueMessage,
        request: JobRequest,
        model: str,
        fingerprint: str,
        error: JobError,
        *,
        started: float,
        max_receive_count: int | None,
        progress: ProgressReporter | None = None,
    ) -> Outcome:
        with self._jobs_lock:
            if message.message_id in self._revoked:  # handed back: its next holder reports the outcome
                return Outcome("retry", request.job_id, model=model)
        last_try = max_receive_count is not None and message.receive_count >= max_receive_count
        logger.warning(
            "job failed",
            extra={
                "error_code": error.code,
                "error": error.message,
                "permanent": error.permanent,
                "last_try": last_try,
            },
        )
        if error.permanent or last_try:
            result = self._result(request, model, message, fingerprint, started, status="failed", error=error)
            self._save_result(request.job_id, result)
            if progress is not None:
                progress.state("failed")
            self._notify(request, result)
        return Outcome(
            "failed" if error.permanent else "retry",
            request.job_id,
            error,
            model=model,
            processing_seconds=round(time.monotonic() - started, 3),
        )

    def _reject(self, message: QueueMessage, exc: ContractError) -> Outcome:
        """A message that breaks the contract: report it wherever its fields allow, then dead-letter it."""
        error = InvalidMessage(str(exc))
        job_id, callback_url, metadata = best_effort_ids(message.body)
        logger.warning("invalid message", extra={"error": error.message, "job_id": job_id})
        folder = job_id or f"_invalid-{message.message_id}"
        result = self._result(
            None,
            None,
            message,
            None,
            time.monotonic(),
            status="failed",
            error=error,
            job_id=job_id,
            metadata=metadata,
        )
        self._save_result(folder, result)
        if callback_url:
            shape = "legacy" if is_legacy_body(message.body) else "v1"
            self._send(callback_url, result, job_id or message.message_id, shape)
        return Outcome("failed", job_id, error)

    def _save_result(self, folder: str, result: JobResult) -> None:
        try:
            self.store.put_result(folder, result)
        except JobError as exc:  # never mask the job's own outcome: a failure is still in the DLQ, a transcript in S3
            logger.error("could not store result.json", extra={"error": exc.message})

    def _notify(self, request: JobRequest, result: JobResult) -> None:
        """Send the result callback and record in result.json whether it arrived, so a redelivery of a finished
        job can send it again if it did not (same webhook-id: receivers de-duplicate)."""
        if not request.callback_url:
            return
        outcome = self._send(request.callback_url, result, request.job_id, request.callback_shape, request.formats[0])
        record = CallbackRecord(
            delivered=bool(outcome and outcome.delivered),
            attempts=outcome.attempts if outcome else 0,
            error=outcome.error if outcome else "webhook secret not configured",
        )
        self._save_result(request.job_id, replace(result, callback=record))

    def _send(
        self, url: str, result: JobResult, job_id: str, shape: str, result_format: str | None = None
    ) -> CallbackOutcome | None:
        if self.callbacks is None:
            logger.error("callback requested but WHISPER_WEBHOOK_SECRET is not set; not sent")
            return None
        payload = result.callback_payload(shape, result_format)
        event_id = result_event_id(job_id, result.status, result.request_sha256, result.message_id)
        outcome = self.callbacks.send(url, payload, event_id=event_id, url_guard=self._guard)
        logger.info(
            "callback delivered" if outcome.delivered else "callback not delivered",
            extra={"attempts": outcome.attempts, "status_code": outcome.status_code, "error": outcome.error},
        )
        return outcome

    def _guard(self, target: str) -> None:
        s = self.settings
        check_url(target, allow_http=s.allow_http, allow_private=s.allow_private_urls)

    def _send_progress(self, request: JobRequest, message: QueueMessage, state: str, percent: float | None) -> None:
        """The optional ``progress`` event; one webhook id per job, state and receive, so retries de-duplicate."""
        if self.progress_callbacks is None or request.callback_url is None:
            return  # the final callback logs the missing secret
        payload = {"job_id": request.job_id, "event": "progress", "state": state, "percent": percent}
        event_id = f"{request.job_id}-progress-{state}-{message.message_id}-{message.receive_count}"
        outcome = self.progress_callbacks.send(request.callback_url, payload, event_id=event_id, url_guard=self._guard)
        if not outcome.delivered:
            logger.info(
                "progress callback not delivered",
                extra={"state": state, "attempts": outcome.attempts, "error": outcome.error},
            )
