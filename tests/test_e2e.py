"""An SQS message in; transcripts in S3, a signed callback out, the message gone — over real HTTP."""

from __future__ import annotations

import json

import jiwer
from whisper.normalizers import EnglishTextNormalizer

from tests.support.harness import Harness
from tests.support.samples import JFK, JFK_TEXT, TEST_MODEL
from worker.contract import OUTPUT_FORMATS as FORMATS
from worker.local.receiver import CallbackReceiver
from worker.service.render import CONTENT_TYPES


def word_error_rate(reference: str, hypothesis: str) -> float:
    normalize = EnglishTextNormalizer()
    return jiwer.wer(normalize(reference), normalize(hypothesis))


def test_message_in_every_format_out_signed_callback_message_deleted(harness: Harness) -> None:
    audio = harness.upload(JFK, "audio/jfk.flac")
    harness.send(
        {
            "job_id": "jfk-1",
            "audio": audio,
            "model": TEST_MODEL,
            "formats": list(FORMATS),
            "callback_url": harness.receiver.url,
            "metadata": {"customer": "acme", "n": 7},
        }
    )
    stats = harness.run_worker()

    assert stats.completed == 1 and stats.failed == 0
    # status.json only if the job outlived the progress interval: a short job is told by result.json alone.
    assert [key for key in harness.object_keys() if not key.endswith("/status.json")] == sorted(
        ["results/jfk-1/result.json"] + [f"results/jfk-1/transcript.{fmt}" for fmt in FORMATS]
    )
    for fmt in FORMATS:
        obj = harness.object(f"results/jfk-1/transcript.{fmt}")
        assert obj["ContentType"] == CONTENT_TYPES[fmt]
        assert obj["ContentDisposition"] == f'inline; filename="jfk-1.{fmt}"'
        assert obj["ContentLength"] > 0

    transcript = json.loads(harness.object("results/jfk-1/transcript.json")["Body"].read())
    assert word_error_rate(JFK_TEXT, transcript["text"]) < 0.10
    assert transcript["language"] == "en" and 10.5 < transcript["duration"] < 11.5
    assert transcript["segments"] and {"id", "start", "end", "text", "avg_logprob", "no_speech_prob"} <= set(
        transcript["segments"][0]
    )
    srt = harness.object("results/jfk-1/transcript.srt")["Body"].read().decode()
    assert srt.startswith("1\n00:00:00,000 --> 00:00:")
    assert harness.object("results/jfk-1/transcript.vtt")["Body"].read().decode().startswith("WEBVTT\n\n00:00:00.000")

    result = harness.result("jfk-1")
    assert result["status"] == "completed" and result["error"] is None
    assert result["model"] == TEST_MODEL and result["metadata"] == {"customer": "acme", "n": 7}
    assert result["results"]["srt"] == "results/jfk-1/transcript.srt"

    [callback] = harness.receiver.wait_for(1, timeout=10)
    assert callback.signature_valid
    assert callback.headers["webhook-id"] and callback.headers["webhook-timestamp"]
    assert callback.payload["job_id"] == "jfk-1" and callback.payload["status"] == "completed"
    assert callback.payload["results"] == result["results"]
    assert callback.payload["metadata"] == {"customer": "acme", "n": 7}
    assert callback.payload["duration_seconds"] == result["duration_seconds"]

    assert harness.queue_depth() == 0
    assert harness.dead_letters() == []


def test_legacy_camel_case_message_is_served(harness: Harness) -> None:
    audio = harness.upload(JFK, "audio/legacy.flac")
    harness.send(
        {
            "transcriptionId": "legacy-42",
            "userId": "user-9",
            "s3AudioUrl": audio,
            "model": "TINY.EN",
            "format": "SRT",
            "callbackUrl": harness.receiver.url,
        }
    )
    stats = harness.run_worker()
    assert stats.completed == 1
    srt = harness.object("results/legacy-42/transcript.srt")["Body"].read().decode()
    said = " ".join(line for line in srt.lower().splitlines() if line and "-->" not in line and not line.isdigit())
    assert "ask not what your country can do for you" in said  # cues break lines: read them as a viewer does
    assert [key for key in harness.object_keys() if not key.endswith("/status.json")] == [
        "results/legacy-42/result.json",
        "results/legacy-42/transcript.srt",
    ]
    [callback] = harness.receiver.wait_for(1, timeout=10)
    assert callback.signature_valid and callback.payload["metadata"] == {"userId": "user-9"}
    # What a backend built on the legacy shape reads, beside the v1 fields.
    bucket = harness.resources.bucket
    assert callback.payload["transcriptionId"] == "legacy-42" and callback.payload["userId"] == "user-9"
    assert callback.payload["status"] == "COMPLETED" and callback.payload["job_id"] == "legacy-42"
    assert callback.payload["s3ResultUrl"] == f"s3://{bucket}/results/legacy-42/transcript.srt"
    assert callback.payload["durationSeconds"] == harness.result("legacy-42")["duration_seconds"] > 10
    assert callback.payload["processingTime"] > 0 and callback.payload["language"] == "en"


def test_legacy_job_that_fails_gets_a_legacy_failure_callback(harness: Harness) -> None:
    harness.send(
        {
            "transcriptionId": "legacy-missing",
            "userId": "user-9",
            "s3AudioUrl": f"s3://{harness.resources.bucket}/audio/none.mp3",
            "format": "SRT",
            "callbackUrl": harness.receiver.url,
        }
    )
    harness.run_worker()
    [callback] = harness.receiver.wait_for(1, timeout=10)
    payload = callback.payload
    assert payload["status"] == "FAILED" and payload["transcriptionId"] == "legacy-missing"
    assert payload["error_code"] == "audio_not_found" and isinstance(payload["error"], str) and payload["error"]
    assert payload["s3ResultUrl"] is None


def test_word_timestamps_and_default_model(harness: Harness) -> None:
    audio = harness.upload(JFK, "audio/words.flac")
    harness.send({"job_id": "words", "audio": audio, "word_timestamps": True})
    assert harness.run_worker().completed == 1
    transcript = json.loads(harness.object("results/words/transcript.json")["Body"].read())
    words = transcript["words"]
    assert [w["word"].strip(" ,.").lower() for w in words[:3]] == ["and", "so", "my"]
    assert all(w["start"] <= w["end"] for w in words)
    assert words == sorted(words, key=lambda w: w["start"])
    assert harness.result("words")["model"] == TEST_MODEL  # the worker's configured default


def test_redelivered_finished_job_is_not_transcribed_again(harness: Harness) -> None:
    audio = harness.upload(JFK, "audio/dup.flac")
    body = {"job_id": "dup", "audio": audio, "model": TEST_MODEL, "callback_url": harness.receiver.url}
    harness.send(body)
    first = harness.run_worker()
    finished = harness.result("dup")["finished_at"]
    harness.send(body)
    second = harness.run_worker()
    assert (first.completed, second.completed, second.duplicates) == (1, 0, 1)
    assert harness.result("dup")["finished_at"] == finished
    assert len(harness.receiver.wait_for(1, timeout=5)) == 1
    assert harness.queue_depth() == 0


def test_redelivery_of_a_finished_job_sends_the_callback_its_dead_worker_never_tried(harness: Harness) -> None:
    audio = harness.upload(JFK, "audio/unsent.flac")
    body = {"job_id": "unsent", "audio": audio, "model": TEST_MODEL, "callback_url": harness.receiver.url}
    harness.send(body)
    assert harness.run_worker().completed == 1
    [first] = harness.receiver.wait_for(1, timeout=10)
    # The worker stores result.json before it calls back; one killed in between leaves it without a callback record.
    stored = harness.result("unsent")
    stored["callback"] = None
    key = "results/unsent/result.json"
    harness.s3.put_object(Bucket=harness.resources.bucket, Key=key, Body=json.dumps(stored).encode())

    harness.send(body)  # the message comes back after the dead worker's visibility timeout
    again = harness.run_worker()

    assert (again.completed, again.duplicates) == (0, 1)  # not transcribed twice
    second = harness.receiver.wait_for(2, timeout=10)[1]
    assert second.signature_valid and second.payload["status"] == "completed"
    assert second.headers["webhook-id"] == first.headers["webhook-id"]  # the same event: receivers de-duplicate
    assert harness.result("unsent")["callback"]["delivered"] is True


def test_a_job_id_sent_again_with_a_new_request_reports_its_status_from_the_start(harness: Harness) -> None:
    audio = harness.upload(JFK, "audio/again.flac")
    harness.send({"job_id": "again", "audio": audio, "formats": ["txt"]})
    harness.run_worker()
    harness.send({"job_id": "again", "audio": audio, "formats": ["srt"]})  # a different request, same id
    assert harness.run_worker().completed == 1
    # The earlier result exists, so the new run's status is written at once and ends on its own outcome: a poller
    # never mistakes the old result for the new run's.
    status = json.loads(harness.object("results/again/status.json")["Body"].read())
    assert status["state"] == "completed"
    assert harness.result("again")["results"] == {"srt": "results/again/transcript.srt"}


def test_redelivery_of_a_finished_job_resends_a_callback_that_never_arrived(harness: Harness, secret: str) -> None:
    audio = harness.upload(JFK, "audio/resend.flac")
    with CallbackReceiver(secret, responses=[500, 500, 500]) as flaky:  # down for the whole first delivery
        body = {"job_id": "resend", "audio": audio, "model": TEST_MODEL, "callback_url": flaky.url}
        harness.send(body)
        assert harness.run_worker().completed == 1
        assert harness.result("resend")["callback"]["delivered"] is False

        harness.send(body)  # the backend never heard back and sends the job again
        again = harness.run_worker()

        assert (again.completed, again.duplicates) == (0, 1)  # not transcribed twice
        [delivered] = flaky.wait_for(1, timeout=10)
        assert delivered.signature_valid and delivered.payload["status"] == "completed"
        assert len({r.headers["webhook-id"] for r in flaky.requests}) == 1  # one event, retried
        assert harness.result("resend")["callback"]["delivered"] is True
