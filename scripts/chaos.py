"""Chaos soak: many messages, several real worker processes, random ``kill -9`` and SIGTERM, then a reckoning.

    python scripts/chaos.py --messages 200 --workers 3 --seconds 900 --kill-every 10 --seed 7

This process hosts everything on loopback: moto's S3 + SQS server (jobs queue with maxReceiveCount 5 and a DLQ)
and a callback receiver. It uploads two real speech files, sends N messages (about 80 % good, 20 % bad in the
ways a backend gets wrong), runs W ``whisper-worker run`` processes, restarts them as they die, and at random
moments sends ``kill -9`` or SIGTERM to one of them. It stops when the jobs queue is empty with nothing in flight,
or at the time limit, and prints a table. Each worker's log (JSON lines) is a file under a temp dir.

Worker exit statuses in the table: 0 a clean stop, -9 our kill -9, -15 a SIGTERM that came while the worker was
still starting (before it installs its handlers), anything else is worth a look in the logs.

Exit status 1 when a job was lost (neither a completed result nor a DLQ entry), a job was transcribed twice
("job completed" logged more than once for one job_id across all worker logs), or the time limit was hit.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker.decode import SAMPLE_RATE, decode_audio
from worker.localaws import LocalAws
from worker.models import resolve
from worker.receiver import CallbackReceiver

ROOT = Path(__file__).resolve().parent.parent
JFK = ROOT / "tests" / "data" / "jfk.flac"
MODEL = "tiny.en"  # the only model available offline
VISIBILITY_TIMEOUT = 10  # the smallest the worker accepts: killed work comes back quickly
MAX_RECEIVE_COUNT = 5
SHUTDOWN_GRACE = 3  # short: a SIGTERM finishes a short job, releases a long one
TEARDOWN_SECONDS = 20  # kept back from --seconds to stop the workers and count
BAD_SHARE = 0.2

# Bad inputs and the error code each must end with (in result.json and on its DLQ entry).
BAD_KINDS = {
    "missing_object": "audio_not_found",
    "undecodable": "undecodable_audio",
    "unknown_model": "unknown_model",
    "invalid_json": "invalid_message",
    "bad_job_id": "invalid_message",
    "unknown_field": "invalid_message",
}


@dataclass
class Sent:
    job_id: str  # our name for it; also the message's job_id where that is valid
    kind: str  # "good" or a key of BAD_KINDS
    body: str
    message_id: str = ""

    @property
    def expected(self) -> str | None:
        return BAD_KINDS.get(self.kind)

    @property
    def result_folder(self) -> str:
        valid_id = self.kind not in ("invalid_json", "bad_job_id")
        return self.job_id if valid_id else f"_invalid-{self.message_id}"


# ---------------------------------------------------------------------------------------------- setup


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200, help="messages to send (default 200)")
    parser.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    parser.add_argument("--seconds", type=float, default=900, help="hard cap on the whole run (default 900)")
    parser.add_argument("--kill-every", type=float, default=10, help="mean seconds between chaos events (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock, printed)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs even when all is well")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = int(time.time()) % 100_000
    return args


def write_wav(path: Path, samples: np.ndarray) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return path


def upload_inputs(s3: Any, bucket: str, workdir: Path) -> dict[str, str]:
    """Two real speech files (jfk.flac, 11 s, and a 3 s wav cut of it) and one object that is not audio."""
    short = write_wav(workdir / "short.wav", decode_audio(JFK, max_seconds=60)[: 3 * SAMPLE_RATE])
    objects = {"jfk": ("audio/jfk.flac", JFK.read_bytes()), "short": ("audio/short.wav", short.read_bytes())}
    objects["garbage"] = ("audio/garbage.mp3", b"this is not audio at all\n" * 64)
    for key, body in objects.values():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return {name: f"s3://{bucket}/{key}" for name, (key, _) in objects.items()}


def make_message(index: int, kind: str, urls: dict[str, str], bucket: str, callback_url: str) -> Sent:
    job_id = f"chaos-{index:05d}"
    good_audio = urls["short"] if index % 3 else urls["jfk"]  # two short clips for every 11 s one
    body: dict[str, Any] = {"job_id": job_id, "audio": good_audio, "model": MODEL, "callback_url": callback_url}
    if kind == "missing_object":
        body["audio"] = f"s3://{bucket}/audio/missing-{index}.flac"
    elif kind == "undecodable":
        body["audio"] = urls["garbage"]
    elif kind == "unknown_model":
        body["model"] = "no-such-model"
    elif kind == "bad_job_id":
        body["job_id"] = f"../{job_id}"
    elif kind == "unknown_field":
        body["colour"] = "blue"
    text = json.dumps(body)
    if kind == "invalid_json":
        text = text[: len(text) // 2]  # cut in half: not JSON, and unique per message
    return Sent(job_id, kind, text)


def make_messages(n: int, rng: random.Random, urls: dict[str, str], bucket: str, callback_url: str) -> list[Sent]:
    n_bad = round(n * BAD_SHARE)
    bad_kinds = rng.sample(list(BAD_KINDS), len(BAD_KINDS))  # every kind once before any twice, in random order
    kinds = ["good"] * (n - n_bad) + [bad_kinds[i % len(bad_kinds)] for i in range(n_bad)]
    rng.shuffle(kinds)
    return [make_message(i, kind, urls, bucket, callback_url) for i, kind in enumerate(kinds)]


def send_all(sqs: Any, queue_url: str, messages: list[Sent]) -> None:
    for sent in messages:
        sent.message_id = sqs.send_message(QueueUrl=queue_url, MessageBody=sent.body)["MessageId"]


def worker_env(local: LocalAws, secret: str, model_dir: Path) -> dict[str, str]:
    env = local.worker_env(
        secret=secret,
        model_dir=model_dir,
        model=MODEL,
        visibility_timeout=VISIBILITY_TIMEOUT,
        retry_base_seconds=1,
        shutdown_grace_seconds=SHUTDOWN_GRACE,
        callback_attempts=3,
        max_idle_seconds=120,  # a safety net: should this script die, its workers stop by themselves
    )
    env["OMP_NUM_THREADS"] = "1"  # several workers share few cores; one thread each avoids oversubscription
    return env


# ---------------------------------------------------------------------------------------------- workers


@dataclass
class Fleet:
    """W worker slots; a dead worker is replaced; ``strike`` sends kill -9 or SIGTERM to a random live one."""

    env: dict[str, str]
    logdir: Path
    size: int
    procs: list[subprocess.Popen | None] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    exits: Counter = field(default_factory=Counter)
    kills: int = 0
    terms: int = 0

    def _start(self, slot: int) -> subprocess.Popen:
        log = self.logdir / f"worker-{slot}-{len(self.logs) + 1:03d}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "run"], cwd=ROOT, env=self.env, stdout=out, stderr=out
            )

    def keep_up(self) -> None:
        while len(self.procs) < self.size:
            self.procs.append(None)
        for slot, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is None:
                continue
            if proc is not None:
                self.exits[proc.returncode] += 1
            self.procs[slot] = self._start(slot)

    def strike(self, rng: random.Random) -> None:
        alive = [p for p in self.procs if p is not None and p.poll() is None]
        if not alive:
            return
        victim = rng.choice(alive)
        if rng.random() < 0.5:
            victim.send_signal(signal.SIGKILL)
            self.kills += 1
        else:
            victim.send_signal(signal.SIGTERM)
            self.terms += 1

    def stop(self) -> None:
        """SIGTERM every worker, wait for the grace period and a little more, then kill -9 what is left."""
        alive = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE + 7
        for proc in alive:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for proc in self.procs:
            if proc is not None:
                self.exits[proc.returncode] += 1
        self.procs = []


def queue_empty(sqs: Any, queue_url: str) -> bool:
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0


def run_chaos(fleet: Fleet, sqs: Any, queue_url: str, rng: random.Random, kill_every: float, deadline: float) -> bool:
    """Keep W workers up and strike at random until the queue is settled; False if the deadline came first."""
    next_strike = time.monotonic() + rng.expovariate(1 / kill_every)
    settled = 0
    while time.monotonic() < deadline:
        fleet.keep_up()
        if time.monotonic() >= next_strike:
            fleet.strike(rng)
            next_strike = time.monotonic() + rng.expovariate(1 / kill_every)
        settled = settled + 1 if queue_empty(sqs, queue_url) else 0
        if settled >= 3:  # empty with nothing in flight, three polls in a row
            return True
        time.sleep(0.5)
    return False


# ---------------------------------------------------------------------------------------------- reckoning


def results(s3: Any, bucket: str) -> dict[str, dict]:
    """result.json of every folder under results/, by folder name."""
    found: dict[str, dict] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="results/"):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/result.json"):
                folder = item["Key"].split("/")[1]
                found[folder] = json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    return found


def dead_letters(sqs: Any, dlq_url: str) -> dict[str, list[str | None]]:
    """Every DLQ entry's error_code (None when SQS's redrive moved it), by message body."""
    entries: dict[str, list[str | None]] = {}
    while True:
        batch = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=600, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return entries
        for message in batch:
            code = message.get("MessageAttributes", {}).get("error_code", {}).get("StringValue")
            entries.setdefault(message["Body"], []).append(code)


def completions(logs: list[Path]) -> Counter:
    """How many "job completed" lines each job_id has across all worker logs."""
    counts: Counter = Counter()
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line torn by kill -9, or stderr
            if isinstance(record, dict) and record.get("message") == "job completed":
                counts[record.get("job_id")] += 1
    return counts


def reckon(
    sent: list[Sent], found: dict[str, dict], dlq: dict[str, list], done: Counter, rx: CallbackReceiver
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The table's rows, and the job_ids behind every anomaly (for the details printed below the table)."""
    callbacks = [c for c in rx.received if c.signature_valid and c.payload is not None]
    called_back = {c.payload["job_id"] for c in callbacks if c.payload.get("job_id")}
    good = {s.job_id for s in sent if s.kind == "good"}
    completed = {s.job_id for s in sent if (found.get(s.result_folder) or {}).get("status") == "completed"}
    failed_ok = {
        s.job_id
        for s in sent
        if s.expected
        and ((found.get(s.result_folder) or {}).get("error") or {}).get("code") == s.expected
        and s.expected in dlq.get(s.body, [])
    }
    in_dlq = {s.job_id for s in sent if s.body in dlq}
    anomalies = {
        "good ones in DLQ": good & in_dlq,
        "bad ones not as expected": {s.job_id for s in sent if s.expected} - failed_ok,
        "lost": {s.job_id for s in sent} - completed - in_dlq,
        "transcribed twice": {job_id for job_id, n in done.items() if n > 1},
        "completed jobs without a callback": completed - called_back,
    }
    rows = {
        "messages sent": len(sent),
        "  good": len(good),
        "  bad": len(sent) - len(good),
        "completed": len(completed),
        "failed as expected": len(failed_ok),
        "in DLQ": len(in_dlq),
        "  good ones in DLQ": len(anomalies["good ones in DLQ"]),
        "  bad ones not as expected": len(anomalies["bad ones not as expected"]),
        "lost": len(anomalies["lost"]),
        "transcribed twice": len(anomalies["transcribed twice"]),
        "callbacks delivered": len(called_back),
        "  raw (at least once)": len(callbacks),
        "  raw without a job_id": sum(1 for c in callbacks if not c.payload.get("job_id")),
        "  completed jobs without one": len(anomalies["completed jobs without a callback"]),
    }
    return rows, {name: sorted(ids) for name, ids in anomalies.items() if ids}


def print_table(rows: dict[str, Any]) -> None:
    width = max(len(name) for name in rows) + 2
    for name, value in rows.items():
        print(f"{name:<{width}}{value}")


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    deadline = started + args.seconds - TEARDOWN_SECONDS
    rng = random.Random(args.seed)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    workdir = Path(tempfile.mkdtemp(prefix="whisper-chaos-"))
    print(f"chaos: {args.messages} messages, {args.workers} workers, a kill -9 or SIGTERM every ~{args.kill_every:g} s")
    print(f"limit {args.seconds:g} s, seed {args.seed}")
    print(f"logs: {workdir}", flush=True)
    resolve(MODEL, model_dir=workdir / "models", sources={}, download=False)  # convert once, before the workers

    with (
        LocalAws(visibility_timeout=VISIBILITY_TIMEOUT, max_receive_count=MAX_RECEIVE_COUNT) as local,
        CallbackReceiver(secret) as rx,
    ):
        r = local.resources
        assert r is not None
        s3, sqs = local.client("s3"), local.client("sqs")
        urls = upload_inputs(s3, r.bucket, workdir)
        sent = make_messages(args.messages, rng, urls, r.bucket, rx.url)
        send_all(sqs, r.queue_url, sent)
        fleet = Fleet(worker_env(local, secret, workdir / "models"), workdir, args.workers)
        try:
            settled = run_chaos(fleet, sqs, r.queue_url, rng, args.kill_every, deadline)
        finally:
            fleet.stop()
        rows, anomalies = reckon(sent, results(s3, r.bucket), dead_letters(sqs, r.dlq_url), completions(fleet.logs), rx)

    rows |= {
        "kill -9 sent": fleet.kills,
        "SIGTERM sent": fleet.terms,
        "worker starts": len(fleet.logs),
        "worker exit statuses": ", ".join(f"{code}: {n}" for code, n in sorted(fleet.exits.items())),
        "time limit hit": "no" if settled else "YES",
        "wall time": f"{time.monotonic() - started:.1f} s",
    }
    print()
    print_table(rows)
    for name, job_ids in anomalies.items():
        print(f"\n{name}: {' '.join(job_ids)}")
    ok = settled and rows["lost"] == 0 and rows["transcribed twice"] == 0
    if not ok:
        print(f"\nFAILED; worker logs kept in {workdir}")
    elif anomalies or args.keep_logs:
        print(f"\nworker logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
