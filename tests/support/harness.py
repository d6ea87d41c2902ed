"""What a backend does against the local stack, for the ``harness`` fixture (tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.together import all_at_once
from worker.engine import Engine
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver
from worker.service.app import build_worker
from worker.service.runner import RunStats
from worker.service.settings import Settings


class Harness:
    """What a backend does: upload audio, send messages, then read results, callbacks and the DLQ."""

    def __init__(self, local: LocalAws, settings: Settings, engine: Engine, receiver: CallbackReceiver) -> None:
        assert local.resources is not None
        self.resources = local.resources
        self.s3 = local.client("s3")
        self.sqs = local.client("sqs")
        self.settings = settings
        self.engine = engine
        self.receiver = receiver

    def upload(self, path: Path | bytes, key: str) -> str:
        body = path if isinstance(path, bytes) else path.read_bytes()
        self.s3.put_object(Bucket=self.resources.bucket, Key=key, Body=body)
        return f"s3://{self.resources.bucket}/{key}"

    def send(self, body: dict | str) -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        return self.sqs.send_message(QueueUrl=self.resources.queue_url, MessageBody=text)["MessageId"]

    def run_worker(self, **overrides: object) -> RunStats:
        return build_worker(self.settings.with_overrides(**overrides), engine=self.engine).run()

    def run_workers_together(self, settings: Settings, engines: list[Engine]) -> list[RunStats]:
        """One worker thread per engine, started at the same moment, as separate machines would run."""
        stats: list[RunStats] = []
        all_at_once(lambda engine: stats.append(build_worker(settings, engine=engine).run()), engines, 300)
        return stats

    def result(self, job_id: str) -> dict:
        return json.loads(self.object(f"results/{job_id}/result.json")["Body"].read())

    def object(self, key: str) -> dict:
        return self.s3.get_object(Bucket=self.resources.bucket, Key=key)

    def object_keys(self, prefix: str = "results/") -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.resources.bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def queue_depth(self, url: str | None = None) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.resources.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def dead_letters(self) -> list[dict]:
        messages = self.sqs.receive_message(
            QueueUrl=self.resources.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        return messages
