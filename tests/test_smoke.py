"""``whisper-worker smoke`` against moto's server, a real worker process, and a stand-in for the HTTPS API.

The stand-in plays API Gateway's two routes as the stack wires them: ``POST /jobs`` sends the body to the jobs queue
(answering 202 with the message id), ``GET /jobs/{job_id}`` answers with the status Lambda's own code
(``infra/functions/job_status.find_job``). It checks what API Gateway would: a SigV4 signature for ``execute-api``
(iam) or the API key. The stack's outputs come from a CloudFormation stack in moto, as ``--stack`` reads them.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from infra.functions.job_status import find_job
from tests.support.backend_shell import backend_env, running_worker
from tests.support.docs import cli
from tests.support.samples import JFK
from worker.client import TranscriptionClient
from worker.client.smoke import ApiTarget, run_smoke
from worker.contract import JOB_ID_PATTERN, OUTPUT_FORMATS
from worker.local.moto_server import LocalAws, LocalResources
from worker.local.receiver import CallbackReceiver
from worker.sample import SAMPLE_WORDS, sample_audio

API_KEY = "smoke-test-key"
STACK = "WhisperSmoke"


@dataclass
class ApiStandIn:
    """POST /jobs and GET /jobs/{job_id}, authorised by a SigV4 signature or by ``x-api-key``."""

    resources: LocalResources
    client: TranscriptionClient
    api_key: str | None = None  # set: apiKey mode; unset: iam (SigV4)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, how it was authorised
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/"

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, str]:
        authorised = self._authorised(headers)
        self.seen.append((method, path, authorised))
        if authorised == "refused":
            return 403, json.dumps({"message": "Forbidden"})
        if method == "POST" and path == "/v1/jobs":
            sent = self.client.sqs.send_message(QueueUrl=self.resources.queue_url, MessageBody=body.decode())
            return 202, json.dumps({"message_id": sent["MessageId"], "request_id": "local"})
        if method == "GET" and path.startswith("/v1/jobs/"):
            job_id = path.removeprefix("/v1/jobs/")
            answer = find_job(self.client.s3, self.resources.bucket, "results/", job_id, JOB_ID_PATTERN)
            return answer["statusCode"], answer["body"]
        return 404, "{}"

    def _authorised(self, headers: Any) -> str:
        if self.api_key is not None:
            return "api key" if headers.get("x-api-key") == self.api_key else "refused"
        signature = headers.get("Authorization") or ""
        scoped = signature.startswith("AWS4-HMAC-SHA256 ") and "/us-east-1/execute-api/aws4_request" in signature
        return "sigv4" if scoped and headers.get("X-Amz-Date") else "refused"

    def __enter__(self) -> ApiStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, text = stand_in.handle(self.command, self.path, self.headers, body)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Deployment:
    resources: LocalResources
    client: TranscriptionClient
    receiver: CallbackReceiver
    api: ApiStandIn
    env: dict[str, str]  # fake credentials and the moto endpoint: what --stack needs
    worker_log: Path


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[Deployment]:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    with LocalAws(visibility_timeout=30, max_receive_count=3) as local, CallbackReceiver(secret) as receiver:
        r = local.resources
        assert r is not None
        client = TranscriptionClient(
            r.queue_url, r.bucket, dlq_url=r.dlq_url, endpoint_url=r.endpoint_url, region="us-east-1"
        )
        log = tmp_path_factory.mktemp("worker") / "worker.log"
        with running_worker(r, model_dir, log, WHISPER_WEBHOOK_SECRET=secret), ApiStandIn(r, client) as api:
            outputs = {"QueueUrl": r.queue_url, "DlqUrl": r.dlq_url, "BucketName": r.bucket, "ApiUrl": api.url}
            template = {
                "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "smoke-marker"}}},
                "Outputs": {key: {"Value": value} for key, value in outputs.items()},
            }
            local.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
            yield Deployment(r, client, receiver, api, backend_env() | {"AWS_ENDPOINT_URL": r.endpoint_url}, log)


def test_smoke_passes_through_the_queue_and_the_api_with_a_delivered_callback(deployment: Deployment) -> None:
    done = cli("smoke", "--stack", STACK, "--callback-url", deployment.receiver.url, "--timeout", "3m",
               env=deployment.env)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr + deployment.worker_log.read_text()[-3000:]
    lines = done.stdout.splitlines()
    steps = [line.split()[1:3] for line in lines if line.startswith("ok ")]
    assert [" ".join(step) for step in steps] == [
        "queue: submit",
        "queue: result",
        "queue: outputs",
        "queue: callback",
        "api: submit",
        "api: result",
        "api: outputs",
    ]
    assert any("queue: callback" in line and "delivered (attempt 1)" in line for line in lines)
    assert any("5 formats parse" in line for line in lines)
    # both paths timed and priced, from the processing time the worker reported
    for path in ("queue", "api"):
        (priced,) = [line for line in lines if line.startswith(f"{path}: ") and "end to end" in line]
        assert "tiny.en" in priced and "$" in priced and "g5.xlarge on-demand" in priced
    assert lines[-1] == "smoke test passed"
    # the API saw a signed submit and signed status reads; both jobs' callbacks arrived, signed
    assert ("POST", "/v1/jobs", "sigv4") in deployment.api.seen
    assert {how for _, _, how in deployment.api.seen} == {"sigv4"}
    delivered = deployment.receiver.wait_for(2, timeout=30)
    assert all(item.signature_valid and item.payload for item in delivered)
    assert {str(item.payload["job_id"])[:10] for item in delivered if item.payload} == {"smoke-job-", "smoke-api-"}


def test_smoke_through_explicit_connection_checks_that_no_callback_was_tried(deployment: Deployment) -> None:
    report = run_smoke(deployment.client, timeout=180)
    assert report.ok, report.steps
    assert [step.name for step in report.steps] == [
        "queue: submit",
        "queue: result",
        "queue: outputs",
        "queue: callback",
    ]
    assert report.steps[3].detail.startswith("none asked, none tried")
    (timing,) = report.timings
    assert timing.path == "queue" and timing.audio_seconds > 10 and timing.processing_seconds > 0
    # every format is really in the bucket, with the sample's words
    job = timing.job_id
    assert set(deployment.client.result_keys(job)) == set(OUTPUT_FORMATS)
    assert SAMPLE_WORDS in deployment.client.text(job).lower().replace(",", "")
    assert deployment.client.s3.head_object(Bucket=deployment.resources.bucket, Key=f"audio/{job}/jfk.opus")


def test_a_refused_api_key_names_the_failing_step(deployment: Deployment) -> None:
    deployment.api.api_key = API_KEY
    try:
        done = cli("smoke", "--stack", STACK, "--api-key", "not-the-key", "--timeout", "3m", env=deployment.env)
    finally:
        deployment.api.api_key = None
    assert done.returncode == 1
    assert "FAIL api: submit" in done.stdout and "POST /jobs answered 403" in done.stdout
    assert "smoke test failed at 'api: submit'" in done.stderr
    assert "ok   queue: outputs" in done.stdout  # the queue path had passed


def test_an_api_key_is_sent_as_api_gateway_expects(deployment: Deployment) -> None:
    deployment.api.api_key = API_KEY
    try:
        report = run_smoke(deployment.client, api=ApiTarget(deployment.api.url, API_KEY), timeout=180)
    finally:
        deployment.api.api_key = None
    assert report.ok, report.steps
    assert report.steps[-1].name == "api: outputs"
    assert ("POST", "/v1/jobs", "api key") in deployment.api.seen


def test_a_job_that_never_finishes_fails_at_the_result_step(deployment: Deployment) -> None:
    idle_queue = deployment.client.sqs.create_queue(QueueName="smoke-nobody-reads")["QueueUrl"]
    r = deployment.resources
    done = cli("smoke", "--queue-url", idle_queue, "--bucket", r.bucket, "--endpoint-url", r.endpoint_url,
               "--timeout", "2s", env=deployment.env)  # fmt: skip
    assert done.returncode == 1
    assert "ok   queue: submit" in done.stdout and "FAIL queue: result" in done.stdout
    assert "still queued after 2 s" in done.stdout
    assert "smoke test failed at 'queue: result'" in done.stderr


def test_a_recording_of_your_own_is_checked_for_the_words_you_expect(deployment: Deployment) -> None:
    r = deployment.resources
    connection = ["--queue-url", r.queue_url, "--bucket", r.bucket, "--endpoint-url", r.endpoint_url, "--no-api"]
    done = cli("smoke", *connection, "--audio", str(JFK), "--expect", "my fellow Americans", "--timeout", "3m",
               env=deployment.env)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hold the words 'my fellow Americans'" in done.stdout
    done = cli("smoke", *connection, "--audio", str(JFK), "--expect", "words never said", "--timeout", "3m",
               env=deployment.env)  # fmt: skip
    assert done.returncode == 1 and "FAIL queue: outputs" in done.stdout
    assert "lacks the spoken words 'words never said'" in done.stdout


def test_the_sample_is_in_the_source_tree() -> None:
    # 11 s of speech in Opus; the wheel leaves it out (tests/test_client_e2e.py installs one and looks)
    assert sample_audio().name == "jfk.opus" and 10_000 < sample_audio().stat().st_size < 50_000
