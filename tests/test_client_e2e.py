"""The backend client and its CLI against moto's server and a real worker process (one for the whole module).

What a backend does, for real: upload, submit, follow, fetch, read the DLQ and redrive it, connect through a
CloudFormation stack, and run the documented examples as written (docs/getting-started/python.md, README's first job).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.support.backend_shell import FAKE_AWS, backend_env, connected_env, running_worker
from tests.support.docs import PYTHON_GUIDE, README, ROOT, cli, code_blocks
from tests.support.samples import JFK
from worker.audio.decode import decode_audio
from worker.audio.wav import write_wav
from worker.client import (
    ConfigurationError,
    JobNotFound,
    JobStatus,
    JobValidationError,
    TranscriptionClient,
    WaitTimeout,
)
from worker.local.moto_server import LocalAws, LocalResources

SPOKEN = "ask not what your country can do for you"
JOB_TIMEOUT = 180.0


@dataclass
class Stack:
    resources: LocalResources
    local: LocalAws
    client: TranscriptionClient
    env: dict[str, str]  # a backend's shell: connection from the environment
    bare_env: dict[str, str]  # fake credentials only: connection from flags or --stack
    worker: subprocess.Popen[bytes]
    worker_log: Path

    def upload(self, key: str, path: Path = JFK) -> str:
        self.client.s3.upload_file(str(path), self.resources.bucket, key)
        return f"s3://{self.resources.bucket}/{key}"

    def _status(self, job_id: str) -> JobStatus:
        """A job sent straight to SQS has no queued marker: unknown, as far as status() can tell, until it starts."""
        try:
            return self.client.status(job_id)
        except JobNotFound:
            return JobStatus(job_id, "unknown")

    def wait_until(self, job_id: str, state: str) -> None:
        """Poll until the job reaches ``state`` (an old result of the same id may be there meanwhile)."""
        deadline = time.monotonic() + JOB_TIMEOUT
        while (current := self._status(job_id)).state != state or not current.done:
            assert self.worker.poll() is None, "worker died:\n" + self.worker_log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{job_id} still {current.state}"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[Stack]:
    with LocalAws(visibility_timeout=30, max_receive_count=3) as local:
        r = local.resources
        assert r is not None
        log = tmp_path_factory.mktemp("worker") / "worker.log"
        client = TranscriptionClient(
            r.queue_url, r.bucket, dlq_url=r.dlq_url, endpoint_url=r.endpoint_url, region="us-east-1"
        )
        with running_worker(r, model_dir, log, WHISPER_RETRY_BASE_SECONDS="1") as worker:
            yield Stack(r, local, client, connected_env(r), backend_env(), worker, log)


@pytest.fixture(scope="module")
def finished_job(stack: Stack) -> str:
    """One job through the Python API, transcribed by the worker process."""
    job_id = stack.client.upload_and_submit(
        JFK, job_id="api-jfk", formats=["json", "srt", "txt"], metadata={"interview_id": 42}
    )
    stack.wait_until(job_id, "completed")
    return job_id


@pytest.fixture(scope="module")
def cfn_stack(stack: Stack) -> str:
    """A CloudFormation stack named like ours whose outputs point at the local resources."""
    r = stack.resources
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "whisper-stack-marker"}}},
        "Outputs": {
            "QueueUrl": {"Value": r.queue_url},
            "DlqUrl": {"Value": r.dlq_url},
            "BucketName": {"Value": r.bucket},
            "JobQueueArn": {"Value": "arn:aws:batch:us-east-1:123456789012:job-queue/whisper-gpu"},
            "DashboardUrl": {"Value": "https://console.aws.amazon.com/cloudwatch/home#dashboards:name=whisper"},
            "ApiUrl": {"Value": "https://api.example/whisper"},
        },
    }
    stack.local.client("cloudformation").create_stack(StackName="WhisperBatch", TemplateBody=json.dumps(template))
    return "WhisperBatch"


# ------------------------------------------------------------------------------------------- submit


def test_submit_wait_prints_the_transcript_and_writes_the_requested_formats(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--job-id", "cli-jfk", "--format", "srt,vtt", "--wait", "--timeout", "3m", "--out", str(out)]
    done = cli("submit", str(JFK), *args, env=stack.env)
    assert done.returncode == 0, done.stderr
    assert SPOKEN in done.stdout.lower()
    assert "uploading jfk.flac" in done.stderr
    assert "submitted cli-jfk" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cli-jfk.srt", "cli-jfk.vtt"]
    assert "00:00:00,000 -->" in (out / "cli-jfk.srt").read_text()
    assert (out / "cli-jfk.vtt").read_text().startswith("WEBVTT")
    assert set(stack.client.result_keys("cli-jfk")) == {"srt", "vtt", "txt"}  # txt added to print the text
    stack.client.s3.head_object(Bucket=stack.resources.bucket, Key="audio/cli-jfk/jfk.flac")


def test_submit_without_wait_prints_the_job_id_for_scripts(stack: Stack) -> None:
    audio = stack.upload("audio/shared/jfk.flac")
    done = cli("submit", audio, "--model", "tiny.en", "--format", "txt", env=stack.env)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert re.fullmatch(r"job-[0-9a-f]{32}", job_id)
    stack.wait_until(job_id, "completed")
    assert SPOKEN in stack.client.text(job_id).lower()


def test_wait_times_out_with_the_last_state_seen(stack: Stack, tmp_path: Path) -> None:
    # Submitted to a queue no worker reads: queued for good, and known as queued (its marker), not unknown.
    queue_url = stack.client.sqs.create_queue(QueueName="nobody-works-this")["QueueUrl"]
    idle = TranscriptionClient(
        queue_url, stack.resources.bucket, endpoint_url=stack.resources.endpoint_url, region="us-east-1"
    )
    job_id = idle.submit(audio=f"s3://{stack.resources.bucket}/audio/none.flac")
    marker = json.loads(
        idle.s3.get_object(Bucket=stack.resources.bucket, Key=f"results/{job_id}/queued.json")["Body"].read()
    )
    assert marker["job_id"] == job_id and marker["state"] == "queued"
    with pytest.raises(WaitTimeout, match="still queued") as caught:
        idle.wait(job_id, timeout=0.3, poll_interval=0.1)
    assert caught.value.status.state == "queued"
    with pytest.raises(JobNotFound, match="never-sent was never submitted"):
        stack.client.wait("never-sent", timeout=60, poll_interval=0.1)  # at once, not after the timeout
    # a minute of speech: a lone 11-s clip can now be done within the half second
    minute = write_wav(tmp_path / "minute.wav", np.tile(decode_audio(JFK, max_seconds=60), 6))
    done = cli("submit", str(minute), "--job-id", "too-impatient", "--wait", "--timeout", "0.5s", env=stack.env)
    assert done.returncode == 4, done.stderr
    assert re.search(r"too-impatient still (queued|fetching|decoding|transcribing|storing) after 0.5 s", done.stderr)
    stack.wait_until("too-impatient", "completed")  # it finishes anyway


def test_invalid_jobs_fail_before_anything_is_uploaded_or_sent(stack: Stack) -> None:
    # A queue and a bucket no worker reads: whatever a refused job left behind would still be there.
    r = stack.resources
    queue_url = stack.client.sqs.create_queue(QueueName="nobody-reads-this")["QueueUrl"]
    bucket = "nobody-reads-this"
    stack.client.s3.create_bucket(Bucket=bucket)
    client = TranscriptionClient(queue_url, bucket, endpoint_url=r.endpoint_url, region="us-east-1")
    env = stack.env | {"WHISPER_QUEUE_URL": queue_url, "WHISPER_RESULTS_BUCKET": bucket}

    with pytest.raises(JobValidationError) as caught:
        client.submit(audio="ftp://host/a.mp3", formats=["doc"], beam_size=11)
    assert {e["field"] for e in caught.value.errors} == {"audio", "formats.0", "beam_size"}
    with pytest.raises(JobValidationError, match="job_id"):
        client.upload_and_submit(JFK, job_id="not a valid id")
    with pytest.raises(JobValidationError, match=r"invalid job id '\.\./secrets'"):
        client.status("../secrets")
    done = cli("submit", str(JFK), "--format", "srt,doc", env=env)
    assert done.returncode == 2
    assert "formats.1" in done.stderr
    missing = cli("submit", "no-such-file.flac", env=env)
    assert missing.returncode == 2
    assert "no-such-file.flac is not a file" in missing.stderr

    assert client.s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    attributes = client.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


# ------------------------------------------------------------------------------------- status, fetch


def test_python_client_follows_and_fetches_a_finished_job(stack: Stack, finished_job: str, tmp_path: Path) -> None:
    client = stack.client
    status = client.status(finished_job)
    assert status.succeeded
    assert status.percent == 100
    assert status.result is not None
    assert status.result is not None and status.result.metadata == {"interview_id": 42}
    assert SPOKEN in client.transcript(finished_job)["text"].lower()
    assert SPOKEN in client.text(finished_job).lower()
    path = client.download(finished_job, "srt", tmp_path)
    assert path == tmp_path / "api-jfk.srt"
    assert "-->" in path.read_text()
    with pytest.raises(JobNotFound, match="no vtt transcript; it produced json, srt, txt"):
        client.download(finished_job, "vtt", tmp_path)
    with pytest.raises(JobNotFound, match="never-submitted was never submitted"):
        client.status("never-submitted")
    with pytest.raises(JobNotFound, match=r"no result yet \(state: never submitted\)"):
        client.transcript("never-submitted")


def test_status_and_fetch_commands_on_a_finished_job(stack: Stack, finished_job: str, tmp_path: Path) -> None:
    status = cli("status", finished_job, env=stack.env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("api-jfk: completed\n")
    assert "language   en" in status.stdout
    assert f"s3://{stack.resources.bucket}/results/api-jfk/transcript.srt" in status.stdout
    as_json = json.loads(cli("status", finished_job, "--json", env=stack.env).stdout)
    assert as_json["state"] == "completed"
    assert as_json["result"]["results"]["txt"] == "results/api-jfk/transcript.txt"

    one = cli("fetch", finished_job, "--format", "srt", "--out", str(tmp_path / "one"), env=stack.env)
    assert one.returncode == 0, one.stderr
    assert one.stdout.strip() == str(tmp_path / "one" / "api-jfk.srt")
    every = cli("fetch", finished_job, "--out", str(tmp_path / "all"), env=stack.env)
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["api-jfk.json", "api-jfk.srt", "api-jfk.txt"]
    assert every.returncode == 0

    unknown = cli("fetch", "never-submitted", env=stack.env)
    assert unknown.returncode == 3
    assert "never-submitted has no result yet (state: never submitted)" in unknown.stderr


def test_status_merges_worker_progress_with_the_result(stack: Stack) -> None:
    def put(name: str, body: object) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        stack.client.s3.put_object(Bucket=stack.resources.bucket, Key=f"results/synthetic/{name}", Body=text)

    def progress(state: str, percent: float | None, at: str) -> dict:
        return {"job_id": "synthetic", "state": state, "percent": percent, "updated_at": at}

    client = stack.client
    put("status.json", progress("transcribing", 42.5, "2026-01-01T00:00:10+00:00"))
    assert (client.status("synthetic").state, client.status("synthetic").percent) == ("transcribing", 42.5)
    put("status.json", progress("completed", 100, "2026-01-01T00:00:20+00:00"))
    assert client.status("synthetic").state == "storing"  # result.json is not readable yet
    result = {"status": "failed", "finished_at": "2026-01-01T00:00:20+00:00", "error": {"code": "empty_audio"}}
    put("result.json", result)
    status = client.status("synthetic")
    assert (status.state, status.done, status.error_code) == ("failed", True, "empty_audio")
    put("status.json", progress("fetching", None, "2026-01-02T09:00:00+00:00"))  # the same id sent again
    assert (client.status("synthetic").state, client.status("synthetic").done) == ("fetching", False)
    put("status.json", "{half written")
    assert client.status("synthetic").state == "failed"
    shown = cli("status", "synthetic", env=stack.env)
    assert "synthetic: failed" in shown.stdout
    assert "error      empty_audio" in shown.stdout


# ------------------------------------------------------------------------------------------------ DLQ


def _moved_by_sqs(stack: Stack, body: dict) -> None:
    """Let SQS itself move a message to our DLQ: a side queue with maxReceiveCount 2, received until it moves."""
    sqs = stack.client.sqs
    dlq_arn = sqs.get_queue_attributes(QueueUrl=stack.resources.dlq_url, AttributeNames=["QueueArn"])
    policy = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": "2"}
    side = sqs.create_queue(QueueName="side-jobs", Attributes={"RedrivePolicy": json.dumps(policy)})["QueueUrl"]
    sqs.send_message(QueueUrl=side, MessageBody=json.dumps(body))
    for _ in range(3):
        sqs.receive_message(QueueUrl=side, VisibilityTimeout=0, WaitTimeSeconds=0)


def test_dlq_list_shows_why_and_redrive_returns_messages_to_the_jobs_queue(stack: Stack) -> None:
    client = stack.client
    late_key = "audio/dlq-missing/late.flac"
    client.submit(job_id="dlq-missing", audio=f"s3://{stack.resources.bucket}/{late_key}")
    failed = client.wait("dlq-missing", timeout=JOB_TIMEOUT)
    assert (failed.state, failed.error_code) == ("failed", "audio_not_found")
    _moved_by_sqs(stack, {"job_id": "dlq-moved", "audio": stack.upload("audio/dlq-moved/jfk.flac")})

    listed = cli("dlq", "list", env=stack.env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "2 message(s) in the DLQ"
    assert any(line.startswith("dlq-missing ") and "audio_not_found: " in line for line in lines)
    assert any(line.startswith("dlq-moved ") and "(moved by SQS after 2 receives)" in line for line in lines)
    as_json = [json.loads(line) for line in cli("dlq", "list", "--json", env=stack.env).stdout.splitlines()]
    missing = next(d for d in as_json if d["job_id"] == "dlq-missing")
    assert missing["error_code"] == "audio_not_found"
    assert missing["source_message_id"]
    assert missing["receive_count"] == 1

    stack.upload(late_key)  # the operator fixes the cause, then redrives
    redriven = cli("dlq", "redrive", "dlq-missing", env=stack.env)
    assert redriven.returncode == 0, redriven.stderr
    assert redriven.stdout.startswith("redrove 1 message(s) to the jobs queue\ndlq-missing ")
    stack.wait_until("dlq-missing", "completed")
    assert [d.job_id for d in client.dead_letters()] == ["dlq-moved"]

    assert cli("dlq", "redrive", "no-such-job", env=stack.env).returncode == 3
    assert cli("dlq", "redrive", env=stack.env).returncode == 2
    everything = cli("dlq", "redrive", "--all", env=stack.env)
    assert everything.stdout.startswith("redrove 1 message(s)")
    stack.wait_until("dlq-moved", "completed")
    assert cli("dlq", "list", env=stack.env).stdout.startswith("0 message(s) in the DLQ")


# ------------------------------------------------------------------------------ stack, the docs, README


def test_connection_from_a_cloudformation_stack(stack: Stack, cfn_stack: str, finished_job: str) -> None:
    r = stack.resources
    client = TranscriptionClient.from_stack(cfn_stack, endpoint_url=r.endpoint_url)
    assert (client.queue_url, client.bucket, client.dlq_url) == (r.queue_url, r.bucket, r.dlq_url)
    assert {"JobQueueArn", "DashboardUrl", "ApiUrl"} <= set(client.stack_outputs)
    assert client.status(finished_job).succeeded
    with pytest.raises(ConfigurationError, match="'Elsewhere' does not exist"):
        TranscriptionClient.from_stack("Elsewhere", endpoint_url=r.endpoint_url)

    endpoint = stack.bare_env | {"AWS_ENDPOINT_URL": r.endpoint_url}
    via_stack = cli("status", finished_job, "--stack", cfn_stack, env=endpoint)
    assert via_stack.returncode == 0, via_stack.stderr
    assert via_stack.stdout.startswith("api-jfk: completed")
    via_flags = cli(
        "status", finished_job, "--queue-url", r.queue_url, "--bucket", r.bucket, "--endpoint-url", r.endpoint_url,
        env=stack.bare_env,
    )  # fmt: skip
    assert via_flags.stdout.startswith("api-jfk: completed"), via_flags.stderr
    unconfigured = cli("status", finished_job, env=stack.bare_env)
    assert unconfigured.returncode == 2
    assert "no jobs queue: set WHISPER_QUEUE_URL, pass --queue-url, or use --stack NAME" in unconfigured.stderr


def _run_example(example: str, where: str, stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A documented Python example, executed as written in a directory holding its ``interview.flac``."""
    shutil.copy(JFK, tmp_path / "interview.flac")
    monkeypatch.chdir(tmp_path)
    for name, value in (FAKE_AWS | {"AWS_ENDPOINT_URL": stack.resources.endpoint_url}).items():
        monkeypatch.setenv(name, value)
    exec(compile(example, where, "exec"), {"__name__": "documented_example"})


def test_python_guide_example_runs_as_written(
    stack: Stack, cfn_stack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    example = code_blocks("python")[0]
    assert f'from_stack("{cfn_stack}")' in example
    where = f"{PYTHON_GUIDE.relative_to(ROOT)} (Send a job and wait for it)"
    _run_example(example, where, stack, tmp_path, monkeypatch)
    assert SPOKEN in capsys.readouterr().out.lower()
    assert "-->" in (tmp_path / "interview.srt").read_text()


def test_readme_first_job_runs_as_written(
    stack: Stack, cfn_stack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    example = code_blocks("python", README.read_text())[0]
    assert f'from_stack("{cfn_stack}")' in example
    _run_example(example, "README.md (Send your first job)", stack, tmp_path, monkeypatch)
    assert SPOKEN in capsys.readouterr().out.lower()


def test_python_guide_cli_examples_run_as_written(stack: Stack, tmp_path: Path) -> None:
    shutil.copy(JFK, tmp_path / "interview.flac")
    lines = [line for block in code_blocks("bash") for line in block.splitlines() if line.startswith("whisper-")]
    outputs = {}
    for line in lines:
        argv = shlex.split(line)
        done = cli(*argv[1:], env=stack.env, cwd=tmp_path)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        outputs[" ".join(argv[1:3])] = done.stdout
    assert SPOKEN in outputs["submit interview.flac"].lower()
    assert outputs["status interview-42"].startswith("interview-42: completed")
    assert (tmp_path / "transcripts" / "interview-42.srt").is_file()
    assert (tmp_path / "transcripts" / "interview-42.vtt").is_file()
    assert "$0.0167" in outputs["estimate --duration"]
    assert "message(s) in the DLQ" in outputs["dlq list"]
    assert outputs["dlq redrive"].startswith("redrove ")
    assert "message(s): " in outputs["dlq settle"]


# --------------------------------------------------------------------------- the client install on its own

HEAVY = {"torch", "numpy", "av", "openai-whisper", "moto", "ctranslate2", "faster-whisper"}
CLIENT_SCRIPT = """
import json, sys
from worker.client import TranscriptionClient
client = TranscriptionClient.from_env()
job_id = client.upload_and_submit(sys.argv[1], formats=["json", "srt"])
status = client.wait(job_id, timeout=float(sys.argv[2]))
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "numpy", "av", "whisper", "moto"})
print(json.dumps({"state": status.state, "text": client.text(job_id), "srt": client.read_transcript(job_id, "srt")
                  .decode(), "heavy": heavy}))
"""


def test_the_bare_install_is_a_client_without_the_worker(stack: Stack, tmp_path: Path) -> None:
    venv = tmp_path / "client-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in stack.env.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PIP_NO_COMPILE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    root = Path(__file__).resolve().parent.parent
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(root)], env=env, capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listing = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=json"], env=env, capture_output=True)
    installed = {p["name"].lower() for p in json.loads(listing.stdout)}
    assert {"whisper-batch", "boto3", "pydantic", "rich"} <= installed
    assert not installed & HEAVY, installed & HEAVY

    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", CLIENT_SCRIPT, str(JFK), str(JOB_TIMEOUT)],
        cwd=tmp_path,  # not the checkout: the installed package only
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT + 60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["state"] == "completed" and SPOKEN in report["text"].lower()
    assert "-->" in report["srt"] and report["heavy"] == []

    cli_path = str(venv / "bin" / "whisper-worker")
    assert subprocess.run([cli_path, "submit", "--help"], env=env, capture_output=True).returncode == 0
    # No audio in the install: the smoke test asks for a recording of the user's own.
    (package,) = (venv / "lib").glob("python*/site-packages/worker")
    assert (package / "client" / "data").is_dir() and not [p.name for p in package.rglob("*.opus")]
    smoke = subprocess.run(
        [cli_path, "smoke", "--queue-url", "q", "--bucket", "b"], env=env, capture_output=True, text=True
    )
    assert smoke.returncode == 2 and "--audio FILE --expect" in smoke.stderr, smoke.stderr
    run = subprocess.run([cli_path, "run"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 2 and "pip install 'whisper-batch[worker]'" in run.stderr
