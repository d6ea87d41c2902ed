"""The whole path on one machine: embedded S3 + SQS, a local callback receiver, real Whisper on real speech."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import time
from pathlib import Path
from typing import TextIO

from worker.contract import OUTPUT_FORMATS
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver
from worker.ops.metrics import JobMetrics
from worker.sample import SampleMissing, sample_audio
from worker.service.app import build_worker
from worker.service.settings import Settings

DEMO_MODEL = "tiny.en"


def _job_id(path: Path, index: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-")[:100] or "audio"
    return f"demo-{index}-{stem}"


def run_demo(audio_files: list[Path], *, model: str = DEMO_MODEL, out: TextIO) -> int:
    """Send one message per file, run the worker until the queue is idle, and report what came out."""
    try:
        files = audio_files or [sample_audio()]
    except SampleMissing as exc:
        print(f"error: {exc}", file=out)
        return 2
    for path in files:
        if not path.is_file():
            print(f"error: {path} is not a file", file=out)
            return 2
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    started = time.monotonic()
    with LocalAws(bucket="whisper-batch-demo") as local, CallbackReceiver(secret) as receiver:
        assert local.resources is not None
        s3, sqs = local.client("s3"), local.client("sqs")
        jobs: list[str] = []
        for index, path in enumerate(files, start=1):
            job_id = _job_id(path, index)
            key = f"audio/{job_id}{path.suffix}"
            s3.upload_file(str(path), local.resources.bucket, key)
            message = {
                "job_id": job_id,
                "audio": f"s3://{local.resources.bucket}/{key}",
                "model": model,
                "formats": list(OUTPUT_FORMATS),
                "callback_url": receiver.url,
                "metadata": {"source_file": path.name},
            }
            sqs.send_message(QueueUrl=local.resources.queue_url, MessageBody=json.dumps(message))
            jobs.append(job_id)
        print(f"Sent {len(jobs)} job(s) to the embedded queue; transcribing with {model} ...", file=out)
        settings = local.settings(
            Settings.from_env(), webhook_secret=secret, wait_seconds=1, max_idle_seconds=3.0, default_model=model
        )
        quiet = JobMetrics(settings.metrics_namespace, write=lambda line: None)  # the demo prints its own report
        stats = build_worker(settings, metrics=quiet).run()
        with contextlib.suppress(TimeoutError):
            receiver.wait_for(len(jobs), timeout=30)
        callbacks = {c.payload.get("job_id"): c for c in receiver.received if c.payload}
        failures = 0
        for job_id in jobs:
            result = json.loads(
                s3.get_object(Bucket=local.resources.bucket, Key=f"results/{job_id}/result.json")["Body"].read()
            )
            print(f"\n== {job_id}: {result['status']}", file=out)
            if result["status"] == "completed":
                body = s3.get_object(Bucket=local.resources.bucket, Key=result["results"]["json"])["Body"].read()
                print(f"   transcript: {json.loads(body)['text'].strip()}", file=out)
                print(
                    f"   language {result['language']}, {result['duration_seconds']:.1f} s of audio "
                    f"in {result['processing_seconds']:.1f} s",
                    file=out,
                )
                for fmt, key in result["results"].items():
                    print(f"   s3://{local.resources.bucket}/{key}  ({fmt})", file=out)
            else:
                failures += 1
                print(f"   error: {result['error']['code']}: {result['error']['message']}", file=out)
            callback = callbacks.get(job_id)
            if callback is None:
                print("   callback: not received", file=out)
                failures += 1
            else:
                verdict = "valid" if callback.signature_valid else "INVALID"
                print(f"   callback: received, signature {verdict}", file=out)
                failures += 0 if callback.signature_valid else 1
    print(
        f"\n{stats.completed} completed, {stats.failed} failed in {time.monotonic() - started:.1f} s",
        file=out,
    )
    return 1 if failures else 0
