"""``whisper-worker smoke``: prove a deployment works end to end, through the queue and through the HTTPS API.

Each step either passes or stops the run with its name and why:

    queue: submit   upload the sample (worker/sample.py; or ``--audio``) and send it with every output format
    queue: result   wait for result.json: completed, with one key per format
    queue: outputs  every transcript exists and parses (json, srt, vtt, txt, tsv) and holds the expected words
    queue: callback what result.json records of the callback (see below)
    api: submit     with an ``ApiUrl`` output: POST /jobs (SigV4, or an API key), 202 and a message id
    api: result     GET /jobs/{job_id} until it answers the finished result.json
    api: outputs    the same transcript checks for the API's job

The callback: a smoke run has no public receiver of its own. With ``callback_url`` (a receiver you run, which
must check the signature itself) the job asks for a callback and the step requires result.json to record it
``delivered`` (the worker writes ``callback: {delivered, attempts, error}`` once it tried); without one, the job
asks for none and the step checks that none was tried (result.json has no ``callback`` record).

It ends with the end-to-end time of each path (submit to result, so a cold start's instance launch and image
pull are in it) and the price of the processing time the worker reported, at the instance type's hourly price.
The client layer only: nothing here imports the worker's engine.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import boto3

from worker.client import pricing
from worker.client.errors import TranscriptionError
from worker.client.sdk import TranscriptionClient, new_job_id
from worker.contract import OUTPUT_FORMATS
from worker.contract.result import JobResult
from worker.sample import SAMPLE_WORDS, sample_audio

DEFAULT_TIMEOUT: Final = 1800.0  # a cold start: Batch launches an instance and pulls the image first
_TIMESTAMP: Final = r"\d{2}:\d{2}(?::\d{2})?[.,]\d{3}"
_CUE: Final = re.compile(rf"^{_TIMESTAMP} --> {_TIMESTAMP}", re.MULTILINE)


class SmokeFailed(Exception):
    """A step did not hold; the message says what was seen."""


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass(frozen=True)
class PathTiming:
    """One path's job: submit to finished result, and what the worker reported."""

    path: str
    job_id: str
    end_to_end_seconds: float
    processing_seconds: float
    audio_seconds: float
    model: str


@dataclass
class SmokeReport:
    steps: list[Step] = field(default_factory=list)
    timings: list[PathTiming] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    @property
    def failed_step(self) -> Step | None:
        return next((step for step in self.steps if not step.ok), None)


@dataclass(frozen=True)
class ApiTarget:
    """The stack's HTTPS API: ``url`` ends with the stage (``.../v1/``); ``api_key`` for apiKey stacks, else
    requests are signed with SigV4 using the client's credentials."""

    url: str
    api_key: str | None = None


def check_outputs(
    client: TranscriptionClient,
    job_id: str,
    expect: str | None = SAMPLE_WORDS,
    formats: tuple[str, ...] = OUTPUT_FORMATS,
) -> str:
    """Every format was written, parses, and holds ``expect`` (with None: some words); returns a one-line summary."""
    keys = client.result_keys(job_id)
    missing = [fmt for fmt in formats if fmt not in keys]
    if missing:
        raise SmokeFailed(f"result.json names no {', '.join(missing)} transcript (it has {', '.join(keys)})")
    for fmt in formats:
        body = client.read_transcript(job_id, fmt).decode("utf-8")
        try:
            text = _PARSERS[fmt](body)
        except (ValueError, KeyError, TypeError) as exc:
            raise SmokeFailed(f"transcript.{fmt} does not parse: {exc}") from None
        words = _words(text)
        if expect is None and not words:
            raise SmokeFailed(f"transcript.{fmt} holds no words")
        if expect is not None and _words(expect) not in words:
            raise SmokeFailed(f"transcript.{fmt} lacks the spoken words {expect!r}: {text[:120]!r}")
    held = "some words" if expect is None else f"the words {expect!r}"
    return f"{len(formats)} formats parse and hold {held}: {', '.join(formats)}"


def check_callback(result: JobResult, callback_url: str | None) -> str:
    record = result.callback
    if callback_url is None:
        if record is not None:
            raise SmokeFailed(f"no callback was asked for, yet result.json records one: {record}")
        return "none asked, none tried (pass --callback-url to test delivery to a receiver you run)"
    if record is None:
        raise SmokeFailed(
            "result.json records no callback attempt: the workers have no webhook secret "
            "(WHISPER_WEBHOOK_SECRET; deploy with webhookSecretArn)"
        )
    if not record.delivered:
        raise SmokeFailed(f"callback not delivered after {record.attempts} attempt(s): {record.error}")
    return f"delivered (attempt {record.attempts})"


def run_smoke(
    client: TranscriptionClient,
    *,
    api: ApiTarget | None = None,
    callback_url: str | None = None,
    model: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    audio: Path | None = None,
    expect: str | None = None,
    say: Callable[[Step], None] = lambda step: None,
    http: Callable[[urllib.request.Request], tuple[int, bytes]] | None = None,
) -> SmokeReport:
    """Run the steps in order and stop at the first that fails; ``say`` hears each step as it ends.

    Without ``audio`` the sample goes, and its words are expected; with it, ``expect`` (None: any words)."""
    report = SmokeReport()
    if audio is None:
        audio, expect = sample_audio(), expect or SAMPLE_WORDS
    send = http or _urlopen
    extra: dict[str, Any] = {"metadata": {"smoke": True}}
    if model:
        extra["model"] = model
    if callback_url:
        extra["callback_url"] = callback_url

    @contextmanager
    def step(name: str) -> Iterator[list[str]]:
        started = time.monotonic()
        detail: list[str] = []
        try:
            yield detail
        except (SmokeFailed, TranscriptionError, OSError) as exc:
            report.steps.append(Step(name, False, str(exc) or type(exc).__name__, time.monotonic() - started))
            say(report.steps[-1])
            raise _Stop from None
        report.steps.append(Step(name, True, "; ".join(detail), time.monotonic() - started))
        say(report.steps[-1])

    try:
        job_id = f"smoke-{new_job_id()}"
        with step("queue: submit") as said:
            submitted = time.monotonic()
            client.upload_and_submit(audio, job_id=job_id, formats=list(OUTPUT_FORMATS), **extra)
            said.append(f"job {job_id}: {audio.name} to s3://{client.bucket}/{client.audio_key(job_id, audio.name)}")
        with step("queue: result") as said:
            result = _finished(client, job_id, timeout)
            report.timings.append(_timing("queue", job_id, time.monotonic() - submitted, result))
            said.append(f"completed in {time.monotonic() - submitted:.1f} s")
        with step("queue: outputs") as said:
            said.append(check_outputs(client, job_id, expect))
        with step("queue: callback") as said:
            said.append(check_callback(result, callback_url))
        if api is not None:
            api_job = f"smoke-api-{new_job_id()}"
            audio_url = f"s3://{client.bucket}/{client.audio_key(job_id, audio.name)}"
            body = {"job_id": api_job, "audio": audio_url, "formats": list(OUTPUT_FORMATS), **extra}
            with step("api: submit") as said:
                submitted = time.monotonic()
                status, answer = send(_api_request(client, api, "POST", "jobs", json.dumps(body).encode()))
                if status != 202:
                    raise SmokeFailed(f"POST /jobs answered {status}: {answer[:300]!r}")
                said.append(f"job {api_job}: message {json.loads(answer).get('message_id')}")
            with step("api: result") as said:
                result = _finished_via_api(client, api, api_job, timeout, send)
                report.timings.append(_timing("api", api_job, time.monotonic() - submitted, result))
                said.append(f"GET /jobs/{api_job}: completed in {time.monotonic() - submitted:.1f} s")
            with step("api: outputs") as said:
                said.append(check_outputs(client, api_job, expect))
    except _Stop:
        pass
    return report


def cost_lines(report: SmokeReport, instance_type: str, spot: bool) -> list[str]:
    """End-to-end time of each path, and the price of the processing time its worker reported."""
    try:
        hourly = pricing.instance(instance_type)
    except pricing.EstimateError as exc:
        return [f"cost: {exc}"]
    rate = hourly.spot_hourly if spot else hourly.on_demand_hourly
    lines = []
    for timing in report.timings:
        cost = timing.processing_seconds / 3600 * rate
        lines.append(
            f"{timing.path}: {timing.end_to_end_seconds:.1f} s end to end (submit to result.json), "
            f"{timing.processing_seconds:.1f} s processing {timing.audio_seconds:.1f} s of audio with "
            f"{timing.model}: ${cost:.6f} at {instance_type} {'spot' if spot else 'on-demand'} (${rate:.3f}/h)"
        )
    return lines


# ---------------------------------------------------------------------------------------------- internals


class _Stop(Exception):
    """A step failed and was recorded: end the run."""


def _finished(client: TranscriptionClient, job_id: str, timeout: float) -> JobResult:
    status = client.wait(job_id, timeout=timeout, poll_interval=2.0, max_poll_interval=10.0)
    result = status.result or client.result(job_id)
    if not result.succeeded:
        error = result.error
        raise SmokeFailed(f"job failed: {error.code if error else 'unknown'}: {error.message if error else ''}")
    return result


def _finished_via_api(
    client: TranscriptionClient,
    api: ApiTarget,
    job_id: str,
    timeout: float,
    send: Callable[[urllib.request.Request], tuple[int, bytes]],
) -> JobResult:
    deadline = time.monotonic() + timeout
    interval = 2.0
    while True:
        status, answer = send(_api_request(client, api, "GET", f"jobs/{job_id}"))
        if status == 200:
            document = json.loads(answer)
            if document.get("status") in ("completed", "failed"):
                result = JobResult.from_dict(document)
                if not result.succeeded:
                    error = result.error
                    raise SmokeFailed(f"job failed: {error.code if error else 'unknown'}")
                return result
        elif status != 404:  # 404: nothing written yet
            raise SmokeFailed(f"GET /jobs/{job_id} answered {status}: {answer[:300]!r}")
        if time.monotonic() >= deadline:
            raise SmokeFailed(f"GET /jobs/{job_id} had no finished result after {timeout:g} s")
        time.sleep(interval)
        interval = min(interval * 1.5, 10.0)


def _api_request(
    client: TranscriptionClient, api: ApiTarget, method: str, path: str, body: bytes | None = None
) -> urllib.request.Request:
    url = api.url.rstrip("/") + "/" + path
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if api.api_key:
        headers["x-api-key"] = api.api_key
    else:
        headers.update(_sigv4_headers(client, method, url, body, headers))
    return urllib.request.Request(url, data=body, method=method, headers=headers)


def _sigv4_headers(
    client: TranscriptionClient, method: str, url: str, body: bytes | None, headers: dict[str, str]
) -> dict[str, str]:
    """IAM auth: the request signed for ``execute-api`` with the default credential chain."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = boto3.session.Session().get_credentials()  # the chain the client's own calls use
    if credentials is None:
        raise SmokeFailed("no AWS credentials to sign the API request (apiAuth iam); pass --api-key for apiKey")
    request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", client.region).add_auth(request)
    return {key: value for key, value in request.headers.items() if key.lower() not in {"content-type"}}


def _urlopen(request: urllib.request.Request) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _timing(path: str, job_id: str, seconds: float, result: JobResult) -> PathTiming:
    return PathTiming(
        path=path,
        job_id=job_id,
        end_to_end_seconds=seconds,
        processing_seconds=float(result.processing_seconds or 0.0),
        audio_seconds=float(result.duration_seconds or 0.0),
        model=result.model or "unknown",
    )


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


def _json_text(body: str) -> str:
    document = json.loads(body)
    if not isinstance(document.get("segments"), list) or not document["segments"]:
        raise ValueError("no segments")
    return str(document["text"])


def _cue_text(body: str, header: str | None) -> str:
    if header is not None and not body.startswith(header):
        raise ValueError(f"does not start with {header}")
    if not _CUE.search(body):
        raise ValueError("no 'start --> end' cue")
    lines = [line for line in body.splitlines() if line.strip() and "-->" not in line and not line.strip().isdigit()]
    return " ".join(line for line in lines if line.strip() != header)


def _tsv_text(body: str) -> str:
    rows = list(csv.reader(io.StringIO(body), delimiter="\t"))
    if not rows or [name.lower() for name in rows[0][:3]] != ["start", "end", "text"] or len(rows) < 2:
        raise ValueError("no 'start, end, text' header and rows")
    for row in rows[1:]:
        int(row[0]), int(row[1])  # milliseconds
    return " ".join(row[2] for row in rows[1:])


def _txt_text(body: str) -> str:
    if not body.strip():
        raise ValueError("empty")
    return body


_PARSERS: Final[dict[str, Callable[[str], str]]] = {
    "json": _json_text,
    "srt": lambda body: _cue_text(body, None),
    "vtt": lambda body: _cue_text(body, "WEBVTT"),
    "txt": _txt_text,
    "tsv": _tsv_text,
}
