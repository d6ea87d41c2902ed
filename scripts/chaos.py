"""Chaos soak: many messages, several real worker processes, random ``kill -9``, SIGTERM and spot interruption
notices, then a reckoning.

    python scripts/chaos.py --messages 200 --workers 3 --seconds 900 --kill-every 10 --seed 7

This process hosts everything on loopback: moto's S3 + SQS server (jobs queue with maxReceiveCount 5 and a DLQ)
and a callback receiver. It uploads two real speech files, sends N messages (about 80 % good, 20 % bad: each
kind in ``BAD_KINDS`` at least once, however small N), runs W workers that take several jobs at once, restarts
them as they die, and at random moments sends ``kill -9`` or SIGTERM to one of them, or announces a spot
interruption (writes the notice file the instance's watcher would, ``SPOT_NOTICE_SECONDS`` ahead, and kills the
worker with ``kill -9`` then if it is still there, as the instance's end would). It stops when the jobs queue is
empty with nothing in flight, when the jobs in flight have made no progress for ``STALL_SECONDS``, or at the time
limit, then settles the DLQ as the stack's settle Lambda would (``whisper-worker dlq settle`` into a
settled-letters queue) and prints a table. Each worker's log (JSON lines) is a file under a temp dir.

Bad kinds are what a backend gets wrong (a missing object, garbage, an unknown model, broken messages) and
poison jobs (a language the model does not know, audio that decodes part way, audio the engine fails on). Each
must end with its error code in result.json and its dead letter; ``engine_fault`` is transient, so SQS itself
moves it to the DLQ after maxReceiveCount tries and result.json, written by the last try, carries the code;
``crash_loop`` kills every worker that starts it (``TEST_CRASH_JOB_PREFIX``), so nobody alive writes its result:
settling the DLQ gives it ``worker_lost`` and its failure callback.

Workers run through ``python -m tests.support.faults`` by default (``--no-engine-faults``: ``whisper-worker run``), a
test backend, not for production: the real worker with a backend that fails every forward pass holding
``engine_fault`` audio, and, once, a random early pass of each process (``TEST_FAULT_ON_CALL``), which the engine
absorbs by decoding the pass again part by part; a pass (or re-decoded part) of one job's one piece cannot be
split, so one good try per process may fail on it (and is retried); any more is counted "beyond the injected
faults".

Worker exit statuses in the table: 0 a clean stop, -9 our kill -9, -15 a SIGTERM that came while the worker was
still starting (before it installs its handlers), anything else is worth a look in the logs.

Exit status 1 when a good job did not complete or reached the DLQ, a bad one did not fail with its own code (in
``result.json`` and on its dead letter), a completed job got no signed callback, a job was lost (neither a
completed result nor a dead letter), stalled (still in progress when nothing else was left: see ``reckon``),
transcribed twice ("job completed" logged more than once for one job_id across all worker logs) or unanswered (a
message with a valid job_id and callback URL that got no signed callback), when good tries failed beyond the
injected faults, or when the time limit was hit.
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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio
from worker.audio.wav import write_wav
from worker.contract import best_effort_ids
from worker.engine.choose import resolve_engine
from worker.errors import WorkerLost
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver
from worker.models.cache import ct2_directory, resolve
from worker.service.claim import CLAIM_FILE

ROOT = Path(__file__).resolve().parent.parent
JFK = ROOT / "tests" / "data" / "jfk.flac"
MODEL = "tiny.en"  # the default model: English-only, so it cannot take a language
MULTILINGUAL = "base"  # bundled offline too; knows 99 languages
VISIBILITY_TIMEOUT = 10  # the smallest the worker accepts: killed work comes back quickly
MAX_RECEIVE_COUNT = 5
SHUTDOWN_GRACE = 3  # short: a SIGTERM finishes a short job, releases a long one
TEARDOWN_SECONDS = 20  # kept back from --seconds to stop the workers and count
CONCURRENCY = 3  # jobs per worker: a poison job shares forward passes with good ones, which is what must not hurt
FAULT_ON_CALL = (1, 5)  # each faulty worker process raises once on a forward pass drawn from this range
# No status.json or result.json written and no message settled for this long, with nothing left to receive: the
# jobs in flight are stuck. Longer than any honest pause (the last backoff of 16 s, a killed worker's visibility
# timeout plus its claim lease plus a restart), several times over.
STALL_SECONDS = 120
BAD_SHARE = 0.2

# Bad inputs and the error code each must end with (in result.json and on its DLQ entry).
BAD_KINDS = {
    "missing_object": "audio_not_found",
    "undecodable": "undecodable_audio",
    "unknown_model": "unknown_model",
    "invalid_json": "invalid_message",
    "bad_job_id": "invalid_message",
    "unknown_field": "invalid_message",
    "unsupported_language": "invalid_message",
    "truncated_audio": "undecodable_audio",
    "engine_fault": "engine_failed",
    "crash_loop": "worker_lost",
}
ENGINE_FAULT = "engine_fault"  # needs the faulty test backend; the real one transcribes its audio
CRASH_LOOP = "crash_loop"  # likewise: the test launcher SIGKILLs its worker when such a job starts
FAULT_KINDS = {ENGINE_FAULT, CRASH_LOOP}
CRASH_PREFIX = "chaos-crash-"
STRIKES = ("kill", "term", "spot")
SPOT_NOTICE_SECONDS = 35.0  # EC2 gives two minutes; the worker keeps 25 s for itself, leaving 10 s of work


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
    def dlq_code(self) -> str | None:
        """The error_code its settled dead letter must carry."""
        return self.expected

    @property
    def answerable(self) -> bool:
        """Whether the message names a valid job_id and a callback URL, so the backend must hear back."""
        job_id, callback_url, _ = best_effort_ids(self.body)
        return job_id == self.job_id and bool(callback_url)

    @property
    def result_folder(self) -> str:
        valid_id = self.kind not in ("invalid_json", "bad_job_id")
        return self.job_id if valid_id else f"_invalid-{self.message_id}"


@dataclass
class Ending:
    """How the chaos loop ended, and the jobs queue at that moment."""

    how: str  # "drained", "stalled" (no progress for STALL_SECONDS) or "time limit"
    waiting: int  # messages visible, still to be received
    in_flight: int  # messages received and neither deleted nor released

    @property
    def only_in_flight(self) -> bool:
        return self.waiting == 0 and self.in_flight > 0


# ---------------------------------------------------------------------------------------------- setup


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200, help="messages to send (default 200)")
    parser.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    parser.add_argument("--seconds", type=float, default=900, help="hard cap on the whole run (default 900)")
    parser.add_argument("--kill-every", type=float, default=10, help="mean seconds between chaos events (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock, printed)")
    parser.add_argument(
        "--engine-faults",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the workers on the faulty test backend (tests/support/faults.py) and send engine_fault jobs "
        "(default on)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs even when all is well")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = int(time.time()) % 100_000
    return args


def write_poison(path: Path) -> Path:
    """Audio the faulty test backend refuses on every forward pass (a constant level; see tests/support/faults.py)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # tests/ is not part of the installed package
    from tests.support.faults import write_poison as poison

    return poison(path)


def prepare_models(model_dir: Path) -> None:
    """Convert (or assemble) each model once here, rather than in every worker at once."""
    resolve(MODEL, model_dir=model_dir, sources={}, download=False)
    if resolve_engine("auto", "cpu") == "ctranslate2":
        ct2_directory(MULTILINGUAL, {}, model_dir)  # the CPU engine reads its split CTranslate2 weights, assembled
    else:
        resolve(MULTILINGUAL, model_dir=model_dir, sources={}, download=False)


def upload_inputs(s3: Any, bucket: str, workdir: Path) -> dict[str, str]:
    """Two real speech files (jfk.flac, 11 s, and a 3 s wav cut of it), an object that is not audio, the first half
    of jfk.flac (decodes part way, then fails) and 5 s of poison for the faulty backend."""
    short = write_wav(workdir / "short.wav", decode_audio(JFK, max_seconds=60)[: 3 * SAMPLE_RATE])
    jfk = JFK.read_bytes()
    objects = {"jfk": ("audio/jfk.flac", jfk), "short": ("audio/short.wav", short.read_bytes())}
    objects["garbage"] = ("audio/garbage.mp3", b"this is not audio at all\n" * 64)
    objects["truncated"] = ("audio/truncated.flac", jfk[: len(jfk) // 2])
    objects["poison"] = ("audio/poison.wav", write_poison(workdir / "poison.wav").read_bytes())
    for key, body in objects.values():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return {name: f"s3://{bucket}/{key}" for name, (key, _) in objects.items()}


def make_message(index: int, kind: str, urls: dict[str, str], bucket: str, callback_url: str) -> Sent:
    job_id = f"{CRASH_PREFIX}{index:05d}" if kind == CRASH_LOOP else f"chaos-{index:05d}"
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
    elif kind == "unsupported_language":
        body |= {"model": MULTILINGUAL, "language": "yue"}  # a Whisper language, the 100th: base knows 99
    elif kind == "truncated_audio":
        body["audio"] = urls["truncated"]
    elif kind == ENGINE_FAULT:
        body["audio"] = urls["poison"]
    text = json.dumps(body)
    if kind == "invalid_json":
        text = text[: len(text) // 2]  # cut in half: not JSON, and unique per message
    return Sent(job_id, kind, text)


def make_messages(
    n: int, rng: random.Random, kinds: list[str], urls: dict[str, str], bucket: str, callback_url: str
) -> list[Sent]:
    """``BAD_SHARE`` of n bad, spread evenly over ``kinds``, and never fewer than one of each (up to n)."""
    n_bad = min(n, max(round(n * BAD_SHARE), len(kinds)))
    bad_kinds = rng.sample(kinds, len(kinds))  # every kind once before any twice, in random order
    sent = ["good"] * (n - n_bad) + [bad_kinds[i % len(bad_kinds)] for i in range(n_bad)]
    rng.shuffle(sent)
    return [make_message(i, kind, urls, bucket, callback_url) for i, kind in enumerate(sent)]


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
        concurrency=CONCURRENCY,
        max_idle_seconds=120,  # a safety net: should this script die, its workers stop by themselves
    )
    env["OMP_NUM_THREADS"] = "1"  # several workers share few cores; one thread each avoids oversubscription
    env["TEST_CRASH_JOB_PREFIX"] = CRASH_PREFIX  # read by the faulty launcher only
    return env


# ---------------------------------------------------------------------------------------------- workers


@dataclass
class Fleet:
    """W worker slots; a dead worker is replaced (on a new instance: a fresh notice file); ``strike`` sends kill -9
    or SIGTERM to a random live one, or announces its instance's spot interruption."""

    env: dict[str, str]
    logdir: Path
    size: int
    rng: random.Random
    faulty: bool  # the faulty test backend (tests/support/faults.py) instead of ``whisper-worker run``
    procs: list[subprocess.Popen | None] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    exits: Counter = field(default_factory=Counter)
    kills: int = 0
    terms: int = 0
    spots: int = 0
    outlived_notice: int = 0  # workers still there when their instance went
    notices: dict[int, Path] = field(default_factory=dict)  # slot -> the notice file of its current instance
    reclaims: dict[int, float] = field(default_factory=dict)  # slot -> when its instance goes (monotonic)
    strikes: list[str] = field(default_factory=list)  # the strikes still to come in this round of three

    def _start(self, slot: int) -> subprocess.Popen:
        log = self.logdir / f"worker-{slot}-{len(self.logs) + 1:03d}.log"
        self.logs.append(log)
        self.notices[slot] = self.logdir / f"notice-{slot}-{len(self.logs):03d}.json"
        self.reclaims.pop(slot, None)
        command, env = ["-m", "worker.cli", "run"], self.env | {"WHISPER_INTERRUPTION_FILE": str(self.notices[slot])}
        if self.faulty:
            fault_on_call = str(self.rng.randint(*FAULT_ON_CALL))
            command, env = ["-m", "tests.support.faults"], env | {"TEST_FAULT_ON_CALL": fault_on_call}
        with open(log, "wb") as out:
            return subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, stdout=out, stderr=out)

    def keep_up(self) -> None:
        while len(self.procs) < self.size:
            self.procs.append(None)
        for slot, proc in enumerate(self.procs):
            goes_at = self.reclaims.get(slot)
            if proc is not None and proc.poll() is None and goes_at is not None and time.monotonic() >= goes_at:
                proc.kill()  # the instance is gone, and the worker with it
                proc.wait(timeout=10)
                self.outlived_notice += 1
            if proc is not None and proc.poll() is None:
                continue
            if proc is not None:
                self.exits[proc.returncode] += 1
            self.procs[slot] = self._start(slot)

    def strike(self) -> None:
        alive = [p for p in self.procs if p is not None and p.poll() is None]
        if not alive:
            return
        victim = self.rng.choice(alive)
        if not self.strikes:  # each kind once in every three strikes, in random order
            self.strikes = self.rng.sample(STRIKES, len(STRIKES))
        strike = self.strikes.pop()
        if strike == "kill":
            victim.send_signal(signal.SIGKILL)
            self.kills += 1
        elif strike == "term":
            victim.send_signal(signal.SIGTERM)
            self.terms += 1
        else:
            self.announce_reclaim(self.procs.index(victim))

    def announce_reclaim(self, slot: int) -> None:
        """What the instance's watcher writes on EC2's notice, renamed into place whole as it does."""
        if slot in self.reclaims:
            return
        goes_at = datetime.now(UTC) + timedelta(seconds=SPOT_NOTICE_SECONDS)
        notice = {"action": "terminate", "time": goes_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
        partial = self.notices[slot].with_suffix(".tmp")
        partial.write_text(json.dumps(notice))
        partial.rename(self.notices[slot])
        self.reclaims[slot] = time.monotonic() + SPOT_NOTICE_SECONDS - 1  # the notice's time is rounded down
        self.spots += 1

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


def queue_counts(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(waiting, in flight): messages visible, and messages received but neither deleted nor released."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def last_write(s3: Any, bucket: str) -> str:
    """The newest write under results/, claims aside (a hung worker keeps renewing its own): the jobs' progress."""
    newest = ""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="results/"):
        for item in page.get("Contents", []):
            if not item["Key"].endswith(CLAIM_FILE):
                newest = max(newest, item["LastModified"].isoformat())
    return newest


def run_chaos(
    fleet: Fleet, sqs: Any, s3: Any, queue_url: str, bucket: str, kill_every: float, deadline: float
) -> Ending:
    """Keep W workers up and strike at random until the queue is drained, or its last jobs stall, or time is up."""
    next_strike = time.monotonic() + fleet.rng.expovariate(1 / kill_every)
    settled = 0
    progress: tuple[int, str] | None = None
    progress_at = time.monotonic()
    while time.monotonic() < deadline:
        fleet.keep_up()
        if time.monotonic() >= next_strike:
            fleet.strike()
            next_strike = time.monotonic() + fleet.rng.expovariate(1 / kill_every)
        waiting, in_flight = queue_counts(sqs, queue_url)
        settled = settled + 1 if waiting + in_flight == 0 else 0
        if settled >= 3:  # empty with nothing in flight, three polls in a row
            return Ending("drained", 0, 0)
        if waiting == 0:  # only jobs in flight are left: are they still moving?
            now = (in_flight, last_write(s3, bucket))
            if now != progress:
                progress, progress_at = now, time.monotonic()
            elif time.monotonic() - progress_at > STALL_SECONDS:
                return Ending("stalled", waiting, in_flight)
        else:
            progress = None
        time.sleep(0.5)
    return Ending("time limit", *queue_counts(sqs, queue_url))


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


def settle_dead_letters(env: dict[str, str], settled_url: str) -> str:
    """What the stack's settle Lambda does for each dead letter, through the command line; its summary line."""
    command = [sys.executable, "-m", "worker.cli", "dlq", "settle", "--settled-url", settled_url]
    command += ["--allow-http", "--allow-private-urls", "--limit", "10000"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    lines = run.stdout.strip().splitlines()
    if run.returncode != 0:
        print(run.stdout + run.stderr)
    return lines[-1] if lines else f"exit {run.returncode}"


def dead_letters(sqs: Any, *urls: str) -> dict[str, list[str | None]]:
    """Every dead letter's error_code (None when it has none: an unsettled move by SQS), by message body."""
    entries: dict[str, list[str | None]] = {}
    for url in urls:
        while True:
            batch = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                code = message.get("MessageAttributes", {}).get("error_code", {}).get("StringValue")
                entries.setdefault(message["Body"], []).append(code)
    return entries


def log_records(log: Path) -> Iterator[dict]:
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by kill -9, or stderr
        if isinstance(record, dict):
            yield record


def completions(logs: list[Path]) -> Counter:
    """How many "job completed" lines each job_id has across all worker logs."""
    return Counter(r.get("job_id") for log in logs for r in log_records(log) if r.get("message") == "job completed")


# Any of these rows above zero fails the run: every good job completes with a signed callback, only bad ones reach
# the DLQ and each with its own code, and nothing is lost, stalled, doubled or left unanswered.
FAILING_ROWS = (
    "  good ones not completed",
    "  good ones in DLQ",
    "  bad ones not as expected",
    "lost",
    "stalled",
    "transcribed twice",
    "  completed jobs without one",
    "unanswered",
)

SPLIT_PASS = "engine pass failed; decoding its parts one by one"  # the engine's log line for an absorbed fault


@dataclass
class EngineFaults:
    """What the worker logs say about failed forward passes."""

    split_passes: int = 0  # passes that failed and were decoded again part by part
    good_tries_failed: int = 0  # tries of good jobs that failed engine_failed
    beyond_injected: set[str] = field(default_factory=set)  # good jobs failed where the injected fault cannot explain


def engine_faults(logs: list[Path], good: set[str], injected: bool) -> EngineFaults:
    """Per worker process, the one injected fault may fail one good try (a pass of one part cannot be split); any
    more means a poison job's failure reached a good job, or the model thread died under all its jobs."""
    found = EngineFaults()
    for log in logs:
        records = list(log_records(log))
        found.split_passes += sum(1 for r in records if r.get("message") == SPLIT_PASS)
        failed = [
            r["job_id"]
            for r in records
            if r.get("message") == "job failed" and r.get("error_code") == "engine_failed" and r.get("job_id") in good
        ]
        found.good_tries_failed += len(failed)
        if len(failed) > int(injected):
            found.beyond_injected.update(failed)
    return found


def reckon(
    sent: list[Sent], found: dict[str, dict], dlq: dict[str, list], done: Counter, rx: CallbackReceiver, end: Ending
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
        and s.dlq_code in dlq.get(s.body, [])
    }
    in_dlq = {s.job_id for s in sent if s.body in dlq}
    # engine_fault may end as worker_lost: a kill -9 during its last try leaves no result.json, so settling the DLQ
    # writes one with worker_lost (or, had settling not run, there is none).
    lost_to_a_kill = {
        s.job_id
        for s in sent
        if s.kind == ENGINE_FAULT
        and s.body in dlq
        and ((found.get(s.result_folder) or {}).get("error") or {}).get("code") in (None, WorkerLost.code)
    }
    unfinished = {s.job_id for s in sent} - completed - in_dlq
    # Stalled: no outcome, when the run ended with nothing left to receive but messages still in flight. A hung
    # worker ends a run this way (its heartbeat keeps the message invisible; the watchdog or the time limit ends
    # the wait); with messages still waiting, unfinished jobs are merely late, and counted as lost.
    stalled = unfinished if end.only_in_flight else set()
    unanswered = {s.job_id for s in sent if s.answerable} - called_back
    anomalies = {
        "good ones in DLQ": good & in_dlq,
        "good ones not completed": good - completed,
        "bad ones not as expected": {s.job_id for s in sent if s.expected} - failed_ok - lost_to_a_kill,
        "lost": unfinished - stalled,
        "stalled": stalled,
        "transcribed twice": {job_id for job_id, n in done.items() if n > 1},
        "completed jobs without a callback": completed - called_back,
        "unanswered": unanswered,
    }
    rows = {
        "messages sent": len(sent),
        "  good": len(good),
        "  bad": len(sent) - len(good),
        "completed": len(completed),
        "  good ones not completed": len(anomalies["good ones not completed"]),
        "failed as expected": len(failed_ok),
    }
    for kind in BAD_KINDS:
        ids = {s.job_id for s in sent if s.kind == kind}
        if ids:
            rows[f"  {kind}"] = f"{len(ids & failed_ok)} of {len(ids)}"
    rows |= {
        "in DLQ": len(in_dlq),
        "  good ones in DLQ": len(anomalies["good ones in DLQ"]),
        "  bad ones not as expected": len(anomalies["bad ones not as expected"]),
        "lost": len(anomalies["lost"]),
        "stalled": len(stalled),
        "transcribed twice": len(anomalies["transcribed twice"]),
        "callbacks delivered": len(called_back),
        "  raw (at least once)": len(callbacks),
        "  raw without a job_id": sum(1 for c in callbacks if not c.payload.get("job_id")),
        "  completed jobs without one": len(anomalies["completed jobs without a callback"]),
        "unanswered": len(unanswered),
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
    kinds = [k for k in BAD_KINDS if args.engine_faults or k not in FAULT_KINDS]
    backend = "the faulty test backend" if args.engine_faults else "whisper-worker run"
    strikes = "a kill -9, SIGTERM or spot notice"
    print(f"chaos: {args.messages} messages, {args.workers} workers, {strikes} every ~{args.kill_every:g} s")
    print(f"limit {args.seconds:g} s, seed {args.seed}, workers on {backend}")
    print(f"logs: {workdir}", flush=True)
    prepare_models(workdir / "models")

    with (
        LocalAws(visibility_timeout=VISIBILITY_TIMEOUT, max_receive_count=MAX_RECEIVE_COUNT) as local,
        CallbackReceiver(secret) as rx,
    ):
        r = local.resources
        assert r is not None
        s3, sqs = local.client("s3"), local.client("sqs")
        urls = upload_inputs(s3, r.bucket, workdir)
        sent = make_messages(args.messages, rng, kinds, urls, r.bucket, rx.url)
        send_all(sqs, r.queue_url, sent)
        env = worker_env(local, secret, workdir / "models")
        fleet = Fleet(env, workdir, args.workers, rng, faulty=args.engine_faults)
        try:
            end = run_chaos(fleet, sqs, s3, r.queue_url, r.bucket, args.kill_every, deadline)
        finally:
            fleet.stop()
        settled_url = sqs.create_queue(QueueName="settled-letters")["QueueUrl"]
        settle_summary = settle_dead_letters(env, settled_url)
        found, dlq = results(s3, r.bucket), dead_letters(sqs, r.dlq_url, settled_url)
        rows, anomalies = reckon(sent, found, dlq, completions(fleet.logs), rx, end)

    good = {s.job_id for s in sent if s.kind == "good"}
    engine = engine_faults(fleet.logs, good, injected=args.engine_faults)
    if engine.beyond_injected:
        anomalies["good tries failed beyond the injected faults"] = sorted(engine.beyond_injected)
    rows |= {
        "engine passes split after a fault": engine.split_passes,
        "good tries failed by the engine": engine.good_tries_failed,
        "  beyond the injected faults": len(engine.beyond_injected),
        "kill -9 sent": fleet.kills,
        "SIGTERM sent": fleet.terms,
        "spot notices sent": fleet.spots,
        "  workers still there when the instance went": fleet.outlived_notice,
        "dead letters settled": settle_summary,
        "worker starts": len(fleet.logs),
        "worker exit statuses": ", ".join(f"{code}: {n}" for code, n in sorted(fleet.exits.items())),
        "time limit hit": "YES" if end.how == "time limit" else "no",
        "wall time": f"{time.monotonic() - started:.1f} s",
    }
    print()
    print_table(rows)
    for name, job_ids in anomalies.items():
        print(f"\n{name}: {' '.join(job_ids)}")
    ok = end.how == "drained" and all(rows[name] == 0 for name in FAILING_ROWS) and not engine.beyond_injected
    if not ok:
        print(f"\nFAILED; worker logs kept in {workdir}")
    elif anomalies or args.keep_logs:
        print(f"\nworker logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
