"""Diarized jobs through a real ``whisper-worker run`` process: SQS messages in; speakers in every transcript
format, in result.json and in the signed callback; a diarizer that cannot run fails its job with its own code."""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.conversation import Conversation, conversation, runs
from tests.support.harness import Harness
from tests.support.samples import JFK, TEST_MODEL
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver, ReceivedCallback

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ["json", "vtt", "srt", "txt", "tsv"]
ORDER = ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00", "SPEAKER_01"]
NAMES = {"p225": "SPEAKER_00", "p226": "SPEAKER_01"}


@dataclass
class Run:
    returncode: int
    stderr: str
    talk: Conversation
    objects: dict[str, str]  # key -> body
    callbacks: dict[str, ReceivedCallback]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("diarize")
    model_dir = tmp_path_factory.getbasetemp() / "models"  # the session's converted tiny.en, when present
    model_dir.mkdir(exist_ok=True)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    talk = conversation()
    with LocalAws(visibility_timeout=60, max_receive_count=3) as local, CallbackReceiver(secret) as receiver:
        r = local.resources
        assert r is not None
        s3, sqs = local.client("s3"), local.client("sqs")
        s3.upload_file(str(talk.save(tmp / "talk.wav")), r.bucket, "audio/talk.wav")
        s3.upload_file(str(JFK), r.bucket, "audio/jfk.flac")
        talk_url, jfk_url = f"s3://{r.bucket}/audio/talk.wav", f"s3://{r.bucket}/audio/jfk.flac"
        jobs = {
            "words": {"audio": talk_url, "diarize": True, "word_timestamps": True, "formats": FORMATS},
            "segments": {"audio": talk_url, "diarize": True, "formats": FORMATS},
            "capped": {"audio": talk_url, "diarize": True, "max_speakers": 1, "formats": ["txt"]},
            "solo": {"audio": jfk_url, "diarize": True, "formats": ["json", "vtt"]},
            "plain": {"audio": jfk_url, "formats": ["json", "tsv"]},
        }
        for job_id, body in jobs.items():
            message = {"job_id": job_id, "callback_url": receiver.url, **body}
            sqs.send_message(QueueUrl=r.queue_url, MessageBody=json.dumps(message))
        env = local.worker_env(secret=secret, model_dir=model_dir, model=TEST_MODEL, concurrency=2)
        done = subprocess.run(
            [sys.executable, "-m", "worker.cli", "run", "--max-jobs", str(len(jobs))],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
        listing = s3.list_objects_v2(Bucket=r.bucket, Prefix="results/").get("Contents", [])
        objects = {
            item["Key"]: s3.get_object(Bucket=r.bucket, Key=item["Key"])["Body"].read().decode() for item in listing
        }
        try:
            received = receiver.wait_for(len(jobs), timeout=10)
        except TimeoutError:
            received = list(receiver.received)
        yield Run(done.returncode, done.stderr, talk, objects, {c.payload["job_id"]: c for c in received})


def _transcript(run: Run, job: str, fmt: str) -> str:
    return run.objects[f"results/{job}/transcript.{fmt}"]


def test_every_job_completed_with_a_signed_callback(run: Run) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    assert set(run.callbacks) == {"words", "segments", "capped", "solo", "plain"}
    for callback in run.callbacks.values():
        assert callback.signature_valid and callback.payload["status"] == "completed"


@pytest.mark.parametrize("job", ["words", "segments"])
def test_two_speakers_in_the_right_order_in_json_vtt_and_srt(run: Run, job: str) -> None:
    doc = json.loads(_transcript(run, job, "json"))
    segments = [s for s in doc["segments"] if s["text"].strip()]
    assert runs([s["speaker"] for s in segments]) == ORDER
    for seg in segments:  # each segment is labelled with whoever speaks at its middle
        middle = (seg["start"] + seg["end"]) / 2
        who = run.talk.speaker_at(middle)
        assert who is None or NAMES[who] == seg["speaker"], seg
    assert [s["speaker"] for s in doc["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]

    vtt = _transcript(run, job, "vtt")
    assert runs(re.findall(r"^<v (SPEAKER_\d\d)>", vtt, flags=re.M)) == ORDER
    srt = _transcript(run, job, "srt")
    assert runs(re.findall(r"^\[(SPEAKER_\d\d)\] ", srt, flags=re.M)) == ORDER  # a name on every cue
    txt = _transcript(run, job, "txt")
    assert re.findall(r"^\[(SPEAKER_\d\d)\] ", txt, flags=re.M) == ORDER
    tsv = _transcript(run, job, "tsv").splitlines()
    assert tsv[0] == "start\tend\tspeaker\ttext"
    assert runs([row.split("\t")[2] for row in tsv[1:]]) == ORDER


def test_with_word_timings_every_word_carries_its_speaker(run: Run) -> None:
    doc = json.loads(_transcript(run, "words", "json"))
    words = [w for s in doc["segments"] for w in s["words"]]
    for seg in doc["segments"]:
        assert {w["speaker"] for w in seg["words"]} == {seg["speaker"]}  # segments were split at the change
    judged = [(w, run.talk.speaker_at((w["start"] + w["end"]) / 2)) for w in words]
    right = sum(1 for w, who in judged if who is not None and NAMES[who] == w["speaker"])
    assert right / len([1 for _, who in judged if who]) > 0.9
    assert [w["speaker"] for w in doc["words"]] == [w["speaker"] for w in words]


def test_result_and_callback_list_each_speaker_with_talk_time(run: Run) -> None:
    result = json.loads(run.objects["results/segments/result.json"])
    speakers = {s["speaker"]: s["seconds"] for s in result["speakers"]}
    assert set(speakers) == {"SPEAKER_00", "SPEAKER_01"}
    for who, name in NAMES.items():
        spoken = sum(end - start for start, end, w in run.talk.turns if w == who)
        assert 0.6 * spoken < speakers[name] <= spoken + 0.5
    assert run.callbacks["segments"].payload["speakers"] == result["speakers"]


def test_max_speakers_merges_voices_to_the_bound(run: Run) -> None:
    assert set(re.findall(r"^\[(SPEAKER_\d\d)\] ", _transcript(run, "capped", "txt"), flags=re.M)) == {"SPEAKER_00"}
    assert [s["speaker"] for s in run.callbacks["capped"].payload["speakers"]] == ["SPEAKER_00"]


def test_one_speaker_gets_one_label(run: Run) -> None:
    doc = json.loads(_transcript(run, "solo", "json"))
    assert {s["speaker"] for s in doc["segments"]} == {"SPEAKER_00"}
    assert set(re.findall(r"<v (SPEAKER_\d\d)>", _transcript(run, "solo", "vtt"))) == {"SPEAKER_00"}


def test_jobs_without_diarize_are_unchanged(run: Run) -> None:
    doc = json.loads(_transcript(run, "plain", "json"))
    assert "speakers" not in doc and all("speaker" not in s for s in doc["segments"])
    assert _transcript(run, "plain", "tsv").startswith("start\tend\ttext\n")
    assert "speakers" not in json.loads(run.objects["results/plain/result.json"])
    assert run.callbacks["plain"].payload["speakers"] is None


def test_a_diarizer_that_cannot_run_fails_the_job_as_diarization_failed(harness: Harness, tmp_path: Path) -> None:
    audio = harness.upload(JFK, "audio/jfk.flac")
    harness.send({"job_id": "no-diarizer", "audio": audio, "diarize": True, "callback_url": harness.receiver.url})
    stats = harness.run_worker(diarization_model=str(tmp_path / "missing-pipeline"), retry_base_seconds=0)
    assert stats.completed == 0
    result = harness.result("no-diarizer")
    assert result["status"] == "failed" and result["error"]["code"] == "diarization_failed"
    assert "config.yaml" in result["error"]["message"]
    [callback] = harness.receiver.wait_for(1, timeout=10)
    assert callback.payload["status"] == "failed" and callback.payload["error"]["code"] == "diarization_failed"
    [dead] = harness.dead_letters()
    assert json.loads(dead["Body"])["job_id"] == "no-diarizer"
    assert not [key for key in harness.object_keys() if "transcript" in key]  # no unlabelled text left behind
