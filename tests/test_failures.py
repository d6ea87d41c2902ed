"""Bad input and failing dependencies end in a failed result, a callback and the DLQ; the worker carries on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.harness import Harness
from tests.support.samples import JFK, TEST_MODEL


@pytest.fixture
def unavailable_server() -> Iterator[str]:
    """An audio host that always answers 503, counting the requests it saw."""

    class Handler(BaseHTTPRequestHandler):
        hits = 0

        def do_GET(self) -> None:
            Handler.hits += 1
            self.send_response(503)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/audio.flac"
    server.shutdown()


def _dead_letter_codes(harness: Harness) -> dict[str, str]:
    return {
        m["MessageAttributes"]["source_message_id"]["StringValue"]: m["MessageAttributes"]["error_code"]["StringValue"]
        for m in harness.dead_letters()
    }


@pytest.mark.parametrize(
    ("case", "expected_code"),
    [
        ("missing_object", "audio_not_found"),
        ("empty_object", "empty_audio"),
        ("undecodable", "undecodable_audio"),
        ("unknown_model", "unknown_model"),
        ("bad_scheme", "invalid_message"),
        ("blocked_host", "blocked_url"),
        ("traversal_job_id", "invalid_message"),
        ("unknown_field", "invalid_message"),
        ("not_json", "invalid_message"),
        ("wrong_type", "invalid_message"),
        ("huge_metadata", "invalid_message"),
        ("deeply_nested", "invalid_message"),
        ("english_model_translate", "invalid_message"),
    ],
)
def test_permanent_failure_is_reported_and_dead_lettered(harness: Harness, case: str, expected_code: str) -> None:
    good_audio = harness.upload(JFK, "audio/good.flac")
    url = harness.receiver.url
    bodies: dict[str, dict | str] = {
        "missing_object": {"job_id": "bad", "audio": f"s3://{harness.resources.bucket}/audio/nope.flac"},
        "empty_object": {"job_id": "bad", "audio": harness.upload(b"", "audio/empty.wav")},
        "undecodable": {"job_id": "bad", "audio": harness.upload(b"\x00garbage" * 1000, "audio/junk.mp3")},
        "unknown_model": {"job_id": "bad", "audio": good_audio, "model": "enormous-v9"},
        "bad_scheme": {"job_id": "bad", "audio": "ftp://example.com/a.wav"},
        "blocked_host": {"job_id": "bad", "audio": "https://169.254.169.254/latest/meta-data"},
        "traversal_job_id": {"job_id": "../../etc", "audio": good_audio},
        "unknown_field": {"job_id": "bad", "audio": good_audio, "colour": "blue"},
        "not_json": "{not json",
        "wrong_type": {"job_id": "bad", "audio": good_audio, "word_timestamps": "yes", "beam_size": "5"},
        "huge_metadata": {"job_id": "bad", "audio": good_audio, "metadata": {"blob": "x" * 200_000}},
        "deeply_nested": '{"job_id": "bad", "metadata": ' + "[" * 5000 + "]" * 5000 + "}",
        "english_model_translate": {"job_id": "bad", "audio": good_audio, "model": TEST_MODEL, "task": "translate"},
    }
    body = bodies[case]
    if isinstance(body, dict):
        body = {**body, "callback_url": url}
    settings = {"allow_private_urls": False} if case == "blocked_host" else {}
    bad_id = harness.send(body)
    harness.send({"job_id": "good-after", "audio": good_audio, "model": TEST_MODEL, "callback_url": url})

    stats = harness.run_worker(**settings)

    assert (stats.failed, stats.completed) == (1, 1)
    assert _dead_letter_codes(harness) == {bad_id: expected_code}
    assert harness.queue_depth() == 0
    assert harness.result("good-after")["status"] == "completed"
    if case in ("traversal_job_id", "not_json", "deeply_nested"):
        [folder] = [k for k in harness.object_keys() if "good-after" not in k]
        assert folder == f"results/_invalid-{bad_id}/result.json"  # never outside results/
        failed = harness.result(f"_invalid-{bad_id}")
    else:
        failed = harness.result("bad")
    assert failed["status"] == "failed" and failed["error"]["code"] == expected_code
    assert failed["error"]["message"]
    if case == "blocked_host":  # the loopback callback URL is refused just like the audio URL
        assert harness.receiver.requests == []
        return
    callbacks = {
        c.payload["job_id"]: c for c in harness.receiver.wait_for(1 if case in ("not_json", "deeply_nested") else 2, 10)
    }
    if case not in ("traversal_job_id", "not_json", "deeply_nested"):
        assert callbacks["bad"].payload["status"] == "failed"
        assert callbacks["bad"].payload["error"]["code"] == expected_code
        assert callbacks["bad"].signature_valid


def test_transient_failure_is_retried_then_reported_once_and_dead_lettered(
    harness: Harness, unavailable_server: str
) -> None:
    message_id = harness.send({"job_id": "flaky", "audio": unavailable_server, "callback_url": harness.receiver.url})

    stats = harness.run_worker(max_idle_seconds=6.0)

    assert stats.retried == 3 and stats.failed == 0  # maxReceiveCount is 3
    result = harness.result("flaky")
    assert result["status"] == "failed" and result["error"]["code"] == "fetch_unavailable"
    assert result["attempt"] == 3
    [callback] = harness.receiver.wait_for(1, timeout=5)
    assert callback.payload["status"] == "failed" and callback.signature_valid
    # SQS itself moved it after the last receive; the original body is intact there.
    [dead] = harness.sqs.receive_message(QueueUrl=harness.resources.dlq_url, WaitTimeSeconds=1)["Messages"]
    assert dead["MessageId"] == message_id
    assert harness.queue_depth() == 0
