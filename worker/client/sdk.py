"""The backend's side of whisper-batch: submit jobs, follow them, fetch transcripts, price audio, tend the DLQ.

    client = TranscriptionClient.from_stack("WhisperBatch")        # or (queue_url=..., bucket=...), or from_env()
    job_id = client.upload_and_submit("call.flac", formats=["srt", "json"])
    status = client.wait(job_id, timeout=600)                      # JobStatus; .succeeded, .error_code
    text = client.transcript(job_id)["text"]

Jobs are validated with the worker's own contract (``worker.contract``) before anything is uploaded or sent, so a
job the worker would reject fails here, at once, with the offending field named. Submitting also writes a small
marker, ``results/<job_id>/queued.json`` (one more S3 request per job), so ``status()`` tells a queued job from one
never submitted (JobNotFound); the Node.js client does the same. Everything the client raises is
a ``TranscriptionError`` (see ``worker.client.errors``). This module must stay light: a backend installs it next
to its web app, so it never imports torch, whisper, numpy or the worker's pipeline (a test checks).
"""

from __future__ import annotations

import contextlib
import json
import logging
import mimetypes
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from worker import aws
from worker.client import pricing
from worker.client.deadletters import DeadLetter, DeadLetterQueue
from worker.client.errors import (
    ConfigurationError,
    JobFailed,
    JobNotFound,
    JobValidationError,
    ServiceError,
    WaitTimeout,
)
from worker.client.pricing import CostEstimate
from worker.client.settle import SettleConfig, Settlement, Unsettled, settle_queue
from worker.contract import JOB_ID_PATTERN, ContractError, JobRequest, is_job_id, parse_message
from worker.contract.result import ErrorInfo, JobResult
from worker.webhooks import WebhookPoster

DEFAULT_STACK_NAME: Final = "WhisperBatch"
JobState = Literal["queued", "fetching", "decoding", "transcribing", "storing", "completed", "failed"]
TERMINAL_STATES: Final = ("completed", "failed")

_SQS_HOST_RE: Final = re.compile(r"sqs[.-]([a-z0-9-]+)\.amazonaws\.com")
_UNSAFE_KEY_CHARS: Final = re.compile(r"[^A-Za-z0-9._-]+")
_log = logging.getLogger(__name__)
QUEUED_MARKER: Final = "queued.json"  # written by submit() beside the worker's status.json and result.json


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands: ``queued`` until a worker reports progress, then the worker's state, then the result.

    ``percent`` is the worker's progress through the audio when it reports one; ``result`` is the parsed
    ``result.json`` once the job has finished (see README "Results").
    """

    job_id: str
    state: str
    percent: float | None = None
    updated_at: str | None = None
    result: JobResult | None = None

    @property
    def done(self) -> bool:
        return self.result is not None and self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.done and self.state == "completed"

    @property
    def error_code(self) -> str | None:
        return self.result.error.code if self.result and self.result.error else None

    @property
    def error_message(self) -> str | None:
        return self.result.error.message if self.result and self.result.error else None


@contextlib.contextmanager
def _aws(action: str) -> Iterator[None]:
    """Turn botocore's exceptions into ServiceError, so backends handle one tree."""
    try:
        yield
    except ClientError as exc:
        raise ServiceError(f"{action} failed: {exc}", aws.error_code(exc) or None) from exc
    except BotoCoreError as exc:
        raise ServiceError(f"{action} failed: {exc}") from exc


def _newer(first: str | None, second: str | None) -> bool:
    """Whether ISO-8601 timestamp ``first`` is later than ``second``; False when either is unreadable."""
    try:
        return datetime.fromisoformat(str(first)) > datetime.fromisoformat(str(second))
    except (TypeError, ValueError):
        return False


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex}"


class TranscriptionClient:
    """Talks to one deployment: its jobs queue, its results bucket (which also takes uploads) and its DLQ."""

    def __init__(
        self,
        queue_url: str,
        bucket: str,
        *,
        dlq_url: str | None = None,
        settled_url: str | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        results_prefix: str = "results/",
        audio_prefix: str = "audio/",
        session: boto3.session.Session | None = None,
    ) -> None:
        if not queue_url:
            raise ConfigurationError("no jobs queue URL")
        if not bucket:
            raise ConfigurationError("no results bucket")
        self.queue_url = queue_url
        self.bucket = bucket
        self.results_prefix = results_prefix.rstrip("/") + "/"
        self.audio_prefix = audio_prefix.rstrip("/") + "/"
        self._dlq_url = dlq_url
        self.settled_url = settled_url  # the settled-letters queue (see worker.client.settle), when there is one
        self.stack_outputs: dict[str, str] = {}  # all outputs of the stack, when made by from_stack
        session = session or boto3.session.Session()
        region = region or session.region_name or _region_from_queue_url(queue_url)
        if region is None and endpoint_url:
            region = "us-east-1"  # a local endpoint (moto, LocalStack) takes any region
        if region is None:
            raise ConfigurationError("no AWS region: set AWS_REGION or pass region=")
        self.region = region
        self.sqs = aws.client("sqs", region=region, endpoint_url=endpoint_url, session=session)
        self.s3 = aws.client("s3", region=region, endpoint_url=endpoint_url, session=session)

    # ---------------------------------------------------------------------------------- construction

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> TranscriptionClient:
        """From ``WHISPER_QUEUE_URL``, ``WHISPER_RESULTS_BUCKET``, ``WHISPER_DLQ_URL``, ``WHISPER_SETTLED_URL``,
        ``AWS_ENDPOINT_URL``, ..."""
        env = os.environ if env is None else env
        queue_url = overrides.pop("queue_url", None) or env.get("WHISPER_QUEUE_URL")
        bucket = overrides.pop("bucket", None) or env.get("WHISPER_RESULTS_BUCKET")
        if not queue_url:
            raise ConfigurationError("no jobs queue: set WHISPER_QUEUE_URL, pass --queue-url, or use --stack NAME")
        if not bucket:
            raise ConfigurationError("no results bucket: set WHISPER_RESULTS_BUCKET, pass --bucket, or --stack NAME")
        options: dict[str, Any] = {
            "dlq_url": env.get("WHISPER_DLQ_URL") or None,
            "settled_url": env.get("WHISPER_SETTLED_URL") or None,
            "endpoint_url": env.get("AWS_ENDPOINT_URL") or None,
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            "results_prefix": env.get("WHISPER_RESULTS_PREFIX") or "results/",
        }
        options.update({key: value for key, value in overrides.items() if value is not None})
        return cls(queue_url, bucket, **options)

    @classmethod
    def from_stack(
        cls,
        name: str = DEFAULT_STACK_NAME,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        session: boto3.session.Session | None = None,
    ) -> TranscriptionClient:
        """From the CloudFormation outputs of a deployed stack (``QueueUrl``, ``BucketName``, ``DlqUrl``,
        ``SettledLettersUrl``)."""
        session = session or boto3.session.Session()
        if region or session.region_name or endpoint_url:
            region = region or session.region_name or "us-east-1"
        try:
            cloudformation = aws.client("cloudformation", region=region, endpoint_url=endpoint_url, session=session)
        except NoRegionError:
            raise ConfigurationError("no AWS region: set AWS_REGION or pass region=") from None
        try:
            stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
        except ClientError as exc:
            if aws.error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                where = region or "the default region"
                raise ConfigurationError(f"stack {name!r} does not exist in {where}") from None
            raise ServiceError(f"reading stack {name!r} failed: {exc}", aws.error_code(exc) or None) from exc
        except BotoCoreError as exc:
            raise ServiceError(f"reading stack {name!r} failed: {exc}") from exc
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", []) if "OutputValue" in o}
        missing = [key for key in ("QueueUrl", "BucketName") if not outputs.get(key)]
        if missing:
            raise ConfigurationError(f"stack {name!r} has no output {' or '.join(missing)}")
        client = cls(
            outputs["QueueUrl"],
            outputs["BucketName"],
            dlq_url=outputs.get("DlqUrl"),
            settled_url=outputs.get("SettledLettersUrl"),
            endpoint_url=endpoint_url,
            region=region,
            session=session,
        )
        client.stack_outputs = outputs
        return client

    # ---------------------------------------------------------------------------------------- submit

    def submit(self, job: JobRequest | Mapping[str, Any] | None = None, /, **fields: Any) -> str:
        """Validate the job as the worker will and send it to the jobs queue; returns its job id.

        ``job`` is a ``JobRequest`` or a message dict (v1 or the legacy camelCase shape); keyword ``fields`` are
        merged over it, so ``submit(audio="s3://b/k", formats=["srt"])`` works too, and so does any contract field:
        ``submit(audio=..., diarize=True, speakers=2)`` (or ``min_speakers``/``max_speakers``). A job without
        ``job_id`` gets a fresh one. Raises JobValidationError (nothing sent) or ServiceError.
        """
        request = self.validate(job, **fields)
        body = request.model_dump_json(exclude_none=True)
        params: dict[str, Any] = {"QueueUrl": self.queue_url, "MessageBody": body}
        if self.queue_url.endswith(".fifo"):
            params |= {"MessageGroupId": request.job_id, "MessageDeduplicationId": uuid.uuid4().hex}
        with _aws(f"sending job {request.job_id}"):
            self.sqs.send_message(**params)
        self._mark_queued(request.job_id)
        return request.job_id

    def _mark_queued(self, job_id: str) -> None:
        """``results/<job_id>/queued.json`` once the message is sent, so status() knows the job before a worker
        starts it. The job is on its way whatever happens here: a failure is logged, not raised (a retried submit
        would send it twice)."""
        body = json.dumps({"job_id": job_id, "state": "queued", "queued_at": datetime.now(UTC).isoformat()})
        key = f"{self.results_prefix}{job_id}/{QUEUED_MARKER}"
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body.encode(), ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            _log.warning(
                "job %s was sent, but recording it as queued (s3://%s/%s) failed: %s", job_id, self.bucket, key, exc
            )

    def validate(self, job: JobRequest | Mapping[str, Any] | None = None, /, **fields: Any) -> JobRequest:
        """The job as the worker will read it, or JobValidationError naming every offending field."""
        if isinstance(job, JobRequest):
            data: dict[str, Any] = job.model_dump(mode="json")
        else:
            data = dict(job or {})
        data.update(fields)
        if "job_id" not in data and "transcriptionId" not in data:
            data["job_id"] = new_job_id()
        try:
            return parse_message(json.dumps(data))
        except ContractError as exc:
            raise JobValidationError(f"invalid job: {exc}", exc.errors) from None
        except (TypeError, ValueError) as exc:  # not JSON-serialisable
            raise JobValidationError(f"invalid job: {exc}") from None

    def upload_and_submit(
        self,
        path: str | os.PathLike[str],
        *,
        job_id: str | None = None,
        progress: Callable[[int], None] | None = None,
        **options: Any,
    ) -> str:
        """Upload a local audio file under ``audio/<job_id>/`` in the bucket, then submit it; returns the job id.

        ``options`` are the job's other fields (``model``, ``formats``, ``language``, ``diarize``, ``speakers``,
        ``min_speakers``, ``max_speakers``, ``subtitles``, ``vad``, ``callback_url``, ...). The job is validated before
        the upload starts.
        ``progress`` is called with each chunk's byte count.
        """
        source = Path(path)
        if not source.is_file():
            raise JobValidationError(f"{source} is not a file", [{"field": "audio", "message": "not a file"}])
        job_id = job_id or new_job_id()
        key = self.audio_key(job_id, source.name)
        request = self.validate(job_id=job_id, audio=f"s3://{self.bucket}/{key}", **options)
        content_type = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        with _aws(f"uploading {source} to s3://{self.bucket}/{key}"):
            self.s3.upload_file(
                str(source), self.bucket, key, ExtraArgs={"ContentType": content_type}, Callback=progress
            )
        return self.submit(request)

    def audio_key(self, job_id: str, filename: str) -> str:
        safe = _UNSAFE_KEY_CHARS.sub("-", filename).strip("-.")[-200:] or "audio"
        return f"{self.audio_prefix}{job_id}/{safe}"

    # ---------------------------------------------------------------------------------------- follow

    def status(self, job_id: str) -> JobStatus:
        """The job's state from ``status.json`` (worker progress) and ``result.json`` (the outcome).

        A job with neither is ``queued`` when submit() left its ``queued.json`` marker, else JobNotFound: never
        submitted (a mistyped id), or sent by a client that leaves no marker. A progress report newer than the
        result (the same job id submitted again) wins over the old result.
        """
        result = self._result_or_none(job_id)
        progress = self._get_json(job_id, "status.json")
        if result is not None and result.status in TERMINAL_STATES:
            reported_later = progress is not None and _newer(progress.get("updated_at"), result.finished_at)
            if not reported_later or progress.get("state") in TERMINAL_STATES:
                percent = 100.0 if result.succeeded else None
                return JobStatus(job_id, result.status, percent, result.finished_at, result)
        if progress is not None:
            state = str(progress.get("state") or "queued")
            if state in TERMINAL_STATES:  # result.json is written last; until it is readable, the job is storing
                state = "storing"
            percent = progress.get("percent")
            percent = float(percent) if isinstance(percent, int | float) else None
            return JobStatus(job_id, state, percent, progress.get("updated_at"))
        if result is None and self._get_json(job_id, QUEUED_MARKER) is None:
            raise JobNotFound(f"job {job_id} was never submitted (no {QUEUED_MARKER}, status.json or result.json)")
        return JobStatus(job_id, "queued")

    def wait(
        self,
        job_id: str,
        timeout: float | None = 3600.0,
        *,
        on_update: Callable[[JobStatus], None] | None = None,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
    ) -> JobStatus:
        """Poll ``status()`` with backoff until the job finishes; returns the final status, completed or failed.

        Raises WaitTimeout (with the last status) after ``timeout`` seconds; ``None`` waits forever; JobNotFound at
        once for a job never submitted.
        ``on_update`` sees every status polled, e.g. to drive a progress bar.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll_interval
        while True:
            status = self.status(job_id)
            if on_update is not None:
                on_update(status)
            if status.done:
                return status
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(f"job {job_id} still {status.state} after {timeout:g} s", status)
            time.sleep(interval if remaining is None else min(interval, remaining))
            interval = min(interval * 1.5, max_poll_interval)

    def result(self, job_id: str) -> JobResult:
        """The ``result.json`` of a finished job (completed or failed); JobNotFound while unfinished."""
        result = self._result_or_none(job_id)
        if result is None:
            try:
                state = self.status(job_id).state
            except JobNotFound:
                state = "never submitted"
            raise JobNotFound(f"job {job_id} has no result yet (state: {state})")
        return result

    def _result_or_none(self, job_id: str) -> JobResult | None:
        document = self._get_json(job_id, "result.json")
        return JobResult.from_dict(document) if document is not None else None

    # ----------------------------------------------------------------------------------------- fetch

    def download(self, job_id: str, fmt: str, dest: str | os.PathLike[str] | None = None) -> Path:
        """Write the job's ``fmt`` transcript to ``dest`` (a file, or a directory for ``<job_id>.<fmt>``)."""
        body = self.read_transcript(job_id, fmt)
        target = Path(dest) if dest is not None else Path.cwd()
        if target.is_dir() or str(dest).endswith(("/", os.sep)):
            target = target / f"{job_id}.{fmt.lower()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        return target

    def transcript(self, job_id: str) -> dict[str, Any]:
        """The job's JSON transcript (OpenAI ``verbose_json`` shape: ``text``, ``segments``, ``language``, ...)."""
        return json.loads(self.read_transcript(job_id, "json"))

    def text(self, job_id: str) -> str:
        """The plain transcript text, from the ``json`` or ``txt`` output, whichever the job produced."""
        formats = self.result_keys(job_id)
        if "json" in formats:
            return str(self.transcript(job_id).get("text", "")).strip()
        if "txt" in formats:
            return self.read_transcript(job_id, "txt").decode("utf-8").strip()
        raise JobNotFound(f"job {job_id} produced neither json nor txt (it produced {', '.join(formats)})")

    def result_keys(self, job_id: str) -> dict[str, str]:
        """Format → S3 key of each transcript of a completed job; JobFailed if it failed."""
        result = self.result(job_id)
        if not result.succeeded:
            error = result.error or ErrorInfo("unknown", "")
            raise JobFailed(job_id, error.code, error.message)
        return dict(result.results)

    def read_transcript(self, job_id: str, fmt: str) -> bytes:
        """The raw bytes of the job's ``fmt`` transcript; JobNotFound if the job did not produce that format."""
        keys = self.result_keys(job_id)
        key = keys.get(fmt.lower())
        if key is None:
            produced = ", ".join(keys) or "nothing"
            raise JobNotFound(f"job {job_id} has no {fmt} transcript; it produced {produced}")
        body = self._get_bytes(key)
        if body is None:
            raise JobNotFound(f"s3://{self.bucket}/{key} is missing")
        return body

    # ------------------------------------------------------------------------------------------ cost

    @staticmethod
    def estimate_cost(
        duration_seconds: float, model: str = "base", instance_type: str = "g5.xlarge", spot: bool = False
    ) -> CostEstimate:
        """Cost, GPU-seconds and managed-API comparison for this much audio (see ``worker.client.pricing``)."""
        return pricing.estimate_cost(duration_seconds, model, instance_type, spot)

    # ------------------------------------------------------------------------------------------- DLQ

    @property
    def dlq_url(self) -> str:
        """The DLQ: given, or found through the jobs queue's redrive policy."""
        if self._dlq_url is None:
            with _aws("reading the jobs queue's redrive policy"):
                self._dlq_url = aws.dead_letter_queue(self.sqs, aws.redrive_policy(self.sqs, self.queue_url))
            if self._dlq_url is None:
                raise ConfigurationError("the jobs queue has no redrive policy: set WHISPER_DLQ_URL or pass dlq_url=")
        return self._dlq_url

    def _letter_queues(self) -> list[DeadLetterQueue]:
        """The DLQ, then the settled-letters queue when there is one: dead letters are listed and redriven from both."""
        queues = [DeadLetterQueue(self.sqs, self.dlq_url)]
        if self.settled_url:
            queues.append(DeadLetterQueue(self.sqs, self.settled_url))
        return queues

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` messages in the DLQ and the settled-letters queue with why they are there; they stay."""
        letters: list[DeadLetter] = []
        with _aws("listing the DLQ"):
            for queue in self._letter_queues():
                with queue.held(limit - len(letters)) as held:
                    letters += held
                if len(letters) >= limit:
                    break
        return letters

    def redrive(self, ids: Iterable[str] | None = None) -> list[DeadLetter]:
        """Send dead letters back to the jobs queue: those whose job id or message id is in ``ids``, or all.

        Returns the letters moved, from the DLQ and the settled-letters queue; ids that matched nothing are not
        among them. Each goes back as a new message with its original body, so it gets a fresh set of receives,
        and is recorded as queued as submit() records a job.
        """
        wanted = None if ids is None else set(ids)
        chosen: list[DeadLetter] = []
        with _aws("redriving the DLQ"), contextlib.ExitStack() as stack:
            for queue in self._letter_queues():
                letters = stack.enter_context(queue.held())
                for letter in letters:
                    if wanted is None or letter.job_id in wanted or letter.message_id in wanted:
                        queue.move(letter, self.queue_url)
                        chosen.append(letter)
        for letter in chosen:
            if letter.job_id is not None:
                self._mark_queued(letter.job_id)
        return chosen

    def settle(
        self,
        *,
        webhook_secret: str | None = None,
        allow_http: bool = False,
        allow_private: bool = False,
        limit: int | None = None,
    ) -> Iterator[Settlement | Unsettled]:
        """Settle every dead letter: a final result.json and its callback for each, then on to the settled-letters
        queue when there is one (see ``worker.client.settle``). Callbacks need ``webhook_secret``; without it the
        results are written and the callbacks skipped."""
        config = SettleConfig(
            bucket=self.bucket,
            results_prefix=self.results_prefix,
            settled_url=self.settled_url,
            allow_http=allow_http,
            allow_private=allow_private,
        )
        poster = None
        if webhook_secret:
            try:
                poster = WebhookPoster(webhook_secret, allow_http=allow_http, allow_private=allow_private)
            except ValueError as exc:  # binascii.Error is a ValueError
                raise ConfigurationError(f"the webhook secret is not whsec_<base64>: {exc}") from None
        dlq = DeadLetterQueue(self.sqs, self.dlq_url)
        with _aws("settling the DLQ"):
            yield from settle_queue(dlq, s3=self.s3, config=config, poster=poster, limit=limit)

    # ------------------------------------------------------------------------------------------- S3

    def _get_json(self, job_id: str, filename: str) -> dict[str, Any] | None:
        if not is_job_id(job_id):
            raise JobValidationError(
                f"invalid job id {job_id!r}: 1-128 ASCII letters, digits, '_' or '-'",
                [{"field": "job_id", "message": "does not match " + JOB_ID_PATTERN}],
            )
        body = self._get_bytes(f"{self.results_prefix}{job_id}/{filename}")
        if body is None:
            return None
        try:
            value = json.loads(body)
        except ValueError:
            return None  # half-written or foreign: as good as absent
        return value if isinstance(value, dict) else None

    def _get_bytes(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if aws.error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise ServiceError(f"reading s3://{self.bucket}/{key} failed: {exc}", aws.error_code(exc) or None) from exc
        except BotoCoreError as exc:
            raise ServiceError(f"reading s3://{self.bucket}/{key} failed: {exc}") from exc


def _region_from_queue_url(url: str) -> str | None:
    match = _SQS_HOST_RE.search(url)
    return match.group(1) if match else None
