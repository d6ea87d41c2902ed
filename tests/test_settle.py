"""Settling dead letters for real: moto's server over HTTP, SQS's own moves to the DLQ, the real callback receiver
(which verifies every signature with the standardwebhooks library), ``whisper-worker dlq settle|list|redrive``
through the CLI's entry point, the settle Lambda's handler on records received from the DLQ, and a real worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.harness import Harness
from tests.support.samples import JFK
from worker.cli import main
from worker.client.settle import WORKER_LOST
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver
from worker.service.errors import WorkerLost
from worker.webhooks import WebhookPoster, sign, webhook_id

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Letters:
    local: LocalAws
    settled_url: str

    @property
    def r(self) -> Any:
        assert self.local.resources is not None
        return self.local.resources

    def connection(self, *, settled: bool = True) -> list[str]:
        r = self.r
        flags = ["--queue-url", r.queue_url, "--bucket", r.bucket, "--dlq-url", r.dlq_url]
        flags += ["--endpoint-url", r.endpoint_url, "--region", "us-east-1"]
        return flags + (["--settled-url", self.settled_url] if settled else [])

    def moved_by_sqs(self, body: dict[str, Any]) -> str:
        """Send a job and receive it until SQS itself moves it to the DLQ, as after a worker killed on each try."""
        sqs = self.local.client("sqs")
        message_id = sqs.send_message(QueueUrl=self.r.queue_url, MessageBody=json.dumps(body))["MessageId"]
        for _ in range(self.r.max_receive_count + 1):
            sqs.receive_message(QueueUrl=self.r.queue_url, VisibilityTimeout=0, WaitTimeSeconds=0)
        assert self.depth(self.r.dlq_url) >= 1
        return message_id

    def depth(self, url: str) -> int:
        attrs = self.local.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def result(self, folder: str) -> dict[str, Any]:
        body = self.local.client("s3").get_object(Bucket=self.r.bucket, Key=f"results/{folder}/result.json")["Body"]
        return json.loads(body.read())

    def put_result(self, folder: str, document: dict[str, Any]) -> None:
        self.local.client("s3").put_object(
            Bucket=self.r.bucket, Key=f"results/{folder}/result.json", Body=json.dumps(document).encode()
        )

    def receive(self, url: str) -> list[dict[str, Any]]:
        return (
            self.local.client("sqs")
            .receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                VisibilityTimeout=0,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            )
            .get("Messages", [])
        )


@pytest.fixture
def letters(local_aws: LocalAws) -> Letters:
    settled = local_aws.client("sqs").create_queue(QueueName="whisper-jobs-settled")["QueueUrl"]
    return Letters(local_aws, settled)


def job(job_id: str, receiver: CallbackReceiver, **extra: Any) -> dict[str, Any]:
    return {"job_id": job_id, "audio": "s3://whisper-batch-local/audio/x.flac", "callback_url": receiver.url, **extra}


def settle_cli(letters: Letters, *extra: str, settled: bool = True) -> int:
    return main(["dlq", "settle", *letters.connection(settled=settled), "--allow-http", "--allow-private-urls", *extra])


# ------------------------------------------------------------------------------------------------ signing


def test_the_standard_library_signature_is_the_standardwebhooks_one(secret: str) -> None:
    body = json.dumps({"job_id": "é-1", "status": "failed"}, ensure_ascii=False)
    poster = WebhookPoster(secret)
    headers = poster.headers("msg_abc", body, 1_800_000_000.7)
    expected = Webhook(secret).sign("msg_abc", datetime.fromtimestamp(1_800_000_000, UTC), body)
    assert headers["webhook-signature"] == expected and headers["webhook-timestamp"] == "1800000000"
    unpadded = secret.rstrip("=")
    assert WebhookPoster(unpadded).headers("m", body, 1)["webhook-signature"] == Webhook(unpadded).sign(
        "m", datetime.fromtimestamp(1, UTC), body
    )
    fresh = poster.headers("msg_abc", body, time.time())
    Webhook(secret).verify(body, fresh)  # raises if it does not verify
    assert sign(b"key", "id", 1, "{}").startswith("v1,")
    assert WorkerLost.code == WORKER_LOST


def test_the_guard_refuses_loopback_and_plain_http(receiver: CallbackReceiver, secret: str) -> None:
    guarded = WebhookPoster(secret, allow_http=True, attempts=2, sleep=lambda _: None)
    refused = guarded.send(receiver.url, {"job_id": "x"}, event_id="x")
    assert not refused.delivered and "non-public" in (refused.error or "") and refused.attempts == 0
    https_only = WebhookPoster(secret, allow_private=True, attempts=2).send(receiver.url, {}, event_id="x")
    assert not https_only.delivered and "scheme 'http' is not allowed" in (https_only.error or "")
    metadata = WebhookPoster(secret, attempts=1).send("https://169.254.169.254/latest", {}, event_id="x")
    assert not metadata.delivered and "non-public" in (metadata.error or "")
    assert receiver.arrivals == 0


# ---------------------------------------------------------------------------------------------------- CLI


def test_dlq_settle_gives_a_lost_message_its_result_and_callback_once(
    letters: Letters, receiver: CallbackReceiver, secret: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("WHISPER_WEBHOOK_SECRET", secret)
    lost = letters.moved_by_sqs(job("lost-1", receiver, model="tiny.en", task="transcribe", metadata={"k": 1}))
    legacy = letters.moved_by_sqs(
        {"transcriptionId": "lost-legacy", "userId": "u-7", "s3AudioUrl": "s3://b/a.flac", "callbackUrl": receiver.url}
    )

    # without the settled-letters queue: results and callbacks, the letters stay in the DLQ
    assert settle_cli(letters, settled=False) == 0
    out = capsys.readouterr()
    assert "2 message(s): 2 settled" in out.out and "they stay in the DLQ" in out.err
    result = letters.result("lost-1")
    assert (result["status"], result["error"]["code"]) == ("failed", "worker_lost")
    assert "after 3 receives" in result["error"]["message"] and result["attempt"] == 3
    assert (result["message_id"], result["metadata"], result["model"], result["task"]) == (
        lost,
        {"k": 1},
        "tiny.en",
        "transcribe",
    )
    assert result["callback"] == {"delivered": True, "attempts": 1, "error": None}
    callbacks = {c.payload["job_id"]: c for c in receiver.wait_for(2, timeout=10)}
    assert all(c.signature_valid for c in callbacks.values())
    v1 = callbacks["lost-1"]
    assert v1.headers["webhook-id"] == webhook_id(f"lost-1-failed-{lost}")  # the worker's event-id scheme
    assert v1.payload["status"] == "failed" and v1.payload["error"]["code"] == "worker_lost"
    assert "transcriptionId" not in v1.payload
    old = callbacks["lost-legacy"].payload
    assert (old["transcriptionId"], old["userId"], old["status"], old["error_code"]) == (
        "lost-legacy",
        "u-7",
        "FAILED",
        "worker_lost",
    )
    assert letters.result("lost-legacy")["message_id"] == legacy

    # again: S3 says they are final; nothing is written or sent twice
    assert settle_cli(letters, settled=False) == 0
    assert "2 already final" in capsys.readouterr().out
    assert letters.result("lost-1") == result
    assert receiver.arrivals == 2

    # with the settled-letters queue: forwarded with their reason, listed from there, and gone from the DLQ
    assert settle_cli(letters) == 0
    assert "2 already final" in capsys.readouterr().out
    assert letters.depth(letters.r.dlq_url) == 0 and letters.depth(letters.settled_url) == 2
    (forwarded,) = [m for m in letters.receive(letters.settled_url) if "lost-1" in m["Body"]]
    attributes = {k: v["StringValue"] for k, v in forwarded["MessageAttributes"].items()}
    assert attributes["error_code"] == "worker_lost" and attributes["source_message_id"] == lost
    assert attributes["receive_count"] == "3" and attributes["job_status"] == "failed" and attributes["settled_at"]
    assert main(["dlq", "list", *letters.connection()]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == "2 message(s) in the DLQ"
    assert any(line.startswith("lost-1 ") and "worker_lost: the last worker" in line for line in listed)
    assert settle_cli(letters) == 0
    assert "0 message(s)" in capsys.readouterr().out
    assert receiver.arrivals == 2


def test_a_letter_the_worker_dead_lettered_is_forwarded_untouched(
    harness: Harness, letters: Letters, receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("WHISPER_WEBHOOK_SECRET", harness.settings.webhook_secret or "")
    harness.send(job("gone-audio", receiver, audio=f"s3://{letters.r.bucket}/audio/never-uploaded.flac"))
    harness.run_worker()
    (callback,) = receiver.wait_for(1, timeout=10)
    before = letters.result("gone-audio")
    assert before["error"]["code"] == "audio_not_found" and before["callback"]["delivered"] is True

    assert settle_cli(letters) == 0
    assert "gone-audio" in capsys.readouterr().out
    assert letters.result("gone-audio") == before
    assert receiver.arrivals == 1 and receiver.requests == [callback]  # no second callback
    (forwarded,) = letters.receive(letters.settled_url)
    assert forwarded["MessageAttributes"]["error_code"]["StringValue"] == "audio_not_found"
    assert forwarded["MessageAttributes"]["source_message_id"]["StringValue"] == before["message_id"]


def test_earlier_and_later_results_of_the_same_job_id(
    letters: Letters, receiver: CallbackReceiver, secret: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """An earlier run's result (finished before this message was sent) is overwritten; a later one is kept."""
    monkeypatch.setenv("WHISPER_WEBHOOK_SECRET", secret)
    earlier = {
        "job_id": "again",
        "status": "completed",
        "message_id": "m-0",
        "finished_at": "2020-01-01T00:00:00+00:00",
    }
    letters.put_result("again", earlier)
    letters.moved_by_sqs(job("again", receiver))
    letters.moved_by_sqs(job("newer", receiver))
    later_at = datetime.now(UTC).isoformat(timespec="seconds")
    later = {"job_id": "newer", "status": "completed", "message_id": "m-9", "finished_at": later_at}
    letters.put_result("newer", later)

    assert settle_cli(letters) == 0
    out = capsys.readouterr().out
    assert "1 settled" in out and "1 superseded" in out
    assert letters.result("again")["error"]["code"] == "worker_lost"
    assert letters.result("newer") == later
    (callback,) = receiver.wait_for(1, timeout=10)
    assert callback.payload["job_id"] == "again"


def test_without_a_secret_results_are_written_and_callbacks_skipped(
    letters: Letters, receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("WHISPER_WEBHOOK_SECRET", raising=False)
    letters.moved_by_sqs({"audio": "s3://b/a.flac", "callback_url": receiver.url})  # no job id at all
    assert settle_cli(letters) == 0
    captured = capsys.readouterr()
    assert "callbacks skipped" in captured.err and "callback skipped: no webhook secret" in captured.out
    (folder,) = {
        key.split("/")[1]
        for key in (
            item["Key"] for item in letters.local.client("s3").list_objects_v2(Bucket=letters.r.bucket)["Contents"]
        )
    }
    assert folder.startswith("_invalid-")
    result = letters.result(folder)
    assert result["job_id"] is None and result["error"]["code"] == "worker_lost"
    assert result["callback"] == {"delivered": False, "attempts": 0, "error": "webhook secret not configured"}
    assert receiver.arrivals == 0


def test_settle_exits_5_when_s3_refuses(letters: Letters, receiver: CallbackReceiver, capsys: Any) -> None:
    letters.moved_by_sqs(job("no-bucket", receiver))
    flags = letters.connection()
    flags[flags.index("--bucket") + 1] = "no-such-bucket"
    assert main(["dlq", "settle", *flags]) == 5
    assert "could not settle: " in capsys.readouterr().out
    assert letters.depth(letters.r.dlq_url) == 1 and letters.depth(letters.settled_url) == 0


# ------------------------------------------------------------------------------------------------- Lambda


@dataclass
class LambdaContext:
    remaining_ms: int = 240_000
    function_name: str = "whisper-batch-settle"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:whisper-batch-settle"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def lambda_event(letters: Letters) -> dict[str, Any]:
    """Receive the DLQ's messages and shape them as Lambda's SQS event source hands them to the handler."""
    sqs = letters.local.client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=letters.r.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    messages = sqs.receive_message(
        QueueUrl=letters.r.dlq_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        VisibilityTimeout=120,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    ).get("Messages", [])
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {
                name: {
                    "stringValue": value.get("StringValue"),
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value["DataType"],
                }
                for name, value in m.get("MessageAttributes", {}).items()
            },
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": "us-east-1",
        }
        for m in messages
    ]
    return {"Records": records}


def finish_batch(letters: Letters, event: dict[str, Any], response: dict[str, Any]) -> None:
    """What the event source mapping does with the answer: delete the successes, let the failures come back."""
    sqs = letters.local.client("sqs")
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for record in event["Records"]:
        if record["messageId"] in failed:
            sqs.change_message_visibility(
                QueueUrl=letters.r.dlq_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
            )
        else:
            sqs.delete_message(QueueUrl=letters.r.dlq_url, ReceiptHandle=record["receiptHandle"])


@pytest.fixture
def lambda_env(letters: Letters, secret: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    r = letters.r
    secrets = letters.local.client("secretsmanager")
    arn = secrets.create_secret(Name="whisper-batch/webhook", SecretString=secret)["ARN"]
    env = {
        "AWS_ENDPOINT_URL": r.endpoint_url,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "WHISPER_RESULTS_BUCKET": r.bucket,
        "WHISPER_RESULTS_PREFIX": "results/",
        "WHISPER_SETTLED_URL": letters.settled_url,
        "WHISPER_WEBHOOK_SECRET_ARN": arn,
        "WHISPER_ALLOW_HTTP": "true",
        "WHISPER_ALLOW_PRIVATE_URLS": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_the_lambda_settles_its_records_and_keeps_the_ones_it_cannot(
    letters: Letters, receiver: CallbackReceiver, lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.functions import settle as function

    lost = letters.moved_by_sqs(job("lambda-1", receiver, metadata={"order": 7}))
    letters.moved_by_sqs({"transcriptionId": "lambda-legacy", "s3AudioUrl": "s3://b/k", "callbackUrl": receiver.url})
    sqs = letters.local.client("sqs")
    attributes = {  # what JobQueue.dead_letter attaches, for a worker whose result.json never reached S3
        "error_code": {"DataType": "String", "StringValue": "undecodable_audio"},
        "error_message": {"DataType": "String", "StringValue": "no audio stream"},
        "source_message_id": {"DataType": "String", "StringValue": "jobs-msg-3"},
        "receive_count": {"DataType": "Number", "StringValue": "1"},
    }
    sqs.send_message(
        QueueUrl=letters.r.dlq_url, MessageBody=json.dumps(job("lambda-3", receiver)), MessageAttributes=attributes
    )

    # S3 refuses (the results bucket is gone): every record is reported and stays in the DLQ
    monkeypatch.setenv("WHISPER_RESULTS_BUCKET", "no-such-bucket")
    event = lambda_event(letters)
    assert len(event["Records"]) == 3
    response = function.handler(event, LambdaContext())
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {r["messageId"] for r in event["Records"]}
    finish_batch(letters, event, response)
    assert letters.depth(letters.r.dlq_url) == 3 and receiver.arrivals == 0

    monkeypatch.setenv("WHISPER_RESULTS_BUCKET", lambda_env["WHISPER_RESULTS_BUCKET"])
    event = lambda_event(letters)
    response = function.handler(event, LambdaContext())
    assert response == {"batchItemFailures": []}
    callbacks = {c.payload["job_id"]: c for c in receiver.wait_for(3, timeout=10)}
    assert all(c.signature_valid for c in callbacks.values())
    assert callbacks["lambda-1"].payload["metadata"] == {"order": 7}
    assert callbacks["lambda-legacy"].payload["status"] == "FAILED"
    assert callbacks["lambda-3"].payload["error"]["code"] == "undecodable_audio"  # the worker's own code
    result = letters.result("lambda-1")
    assert result["error"]["code"] == "worker_lost" and result["message_id"] == lost
    assert letters.result("lambda-3")["message_id"] == "jobs-msg-3"

    # redelivered before the mapping deleted them (at least once): nothing new is written or sent
    again = function.handler(event, LambdaContext())
    assert again == {"batchItemFailures": []} and letters.result("lambda-1") == result
    assert receiver.arrivals == 3
    finish_batch(letters, event, response)
    assert letters.depth(letters.r.dlq_url) == 0
    codes = {m["MessageAttributes"]["error_code"]["StringValue"] for m in letters.receive(letters.settled_url)}
    assert codes == {"worker_lost", "undecodable_audio"}

    # too little time left: the record is reported without being touched
    letters.moved_by_sqs(job("lambda-late", receiver))
    event = lambda_event(letters)
    late = function.handler(event, LambdaContext(remaining_ms=1000))
    assert late["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]


def test_the_lambda_bundle_imports_without_pydantic_or_httpx(tmp_path: Path) -> None:
    from infra.functions_code import bundle

    bundle(tmp_path)
    site = str(Path(boto3.__file__).parent.parent)  # boto3 and its dependencies, as the Lambda runtime has them
    probe = f"""
import sys
sys.path[:0] = [{str(tmp_path)!r}, {site!r}]
import functions.settle
import worker.client.settle
assert worker.client.settle.__file__.startswith({str(tmp_path)!r}), worker.client.settle.__file__
third_party = sorted({{name.split(".")[0] for name, module in sys.modules.items()
                       if (getattr(module, "__file__", None) or "").startswith({site!r})}})
print(" ".join(third_party))
"""
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert "boto3" in loaded and "botocore" in loaded
    allowed = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six", "certifi"}
    assert loaded <= allowed, loaded - allowed  # no pydantic, httpx, standardwebhooks, ...


# ------------------------------------------------------------------------------------------------ redrive


def test_a_settled_letter_redriven_completes_and_overwrites_the_failure(
    harness: Harness, letters: Letters, receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("WHISPER_WEBHOOK_SECRET", harness.settings.webhook_secret or "")
    audio = harness.upload(JFK, "audio/redriven/jfk.flac")
    letters.moved_by_sqs(job("redriven", receiver, audio=audio, formats=["txt"]))
    assert settle_cli(letters) == 0
    assert letters.result("redriven")["status"] == "failed"
    receiver.wait_for(1, timeout=10)

    assert main(["dlq", "redrive", "redriven", *letters.connection()]) == 0
    assert "redrove 1 message(s)" in capsys.readouterr().out
    assert letters.depth(letters.settled_url) == 0
    harness.run_worker()
    result = letters.result("redriven")
    assert result["status"] == "completed" and result.get("error") is None  # the failure was not taken as done
    assert "ask not what your country" in result["text_preview"].lower()
    success = receiver.wait_for(2, timeout=30)[-1]
    assert success.signature_valid and success.payload["status"] == "completed"
