"""An embedded AWS on loopback (moto's server over HTTP) with the bucket, jobs queue and DLQ the worker needs."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from worker import aws
from worker.service.settings import Settings

_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class LocalResources:
    endpoint_url: str
    bucket: str
    queue_url: str
    dlq_url: str
    max_receive_count: int


def use_fake_credentials() -> None:
    """moto accepts any credentials; make sure real ones are never sent to it (or anywhere)."""
    os.environ.update(_FAKE_CREDENTIALS)


class LocalAws:
    """``with LocalAws() as local:`` serves S3 and SQS on 127.0.0.1 until the block ends."""

    def __init__(
        self,
        *,
        bucket: str = "whisper-batch-local",
        queue: str = "whisper-jobs",
        visibility_timeout: int = 60,
        max_receive_count: int = 3,
        own_process: bool = False,
    ) -> None:
        """``own_process`` runs moto's server in a process of its own, so its work does not share this process's
        interpreter lock (a benchmark's clock and polling, or a worker under test)."""
        self._own_process = own_process
        self._process: subprocess.Popen[bytes] | None = None
        self._bucket = bucket
        self._queue = queue
        self._visibility_timeout = visibility_timeout
        self._max_receive_count = max_receive_count
        self._server: Any = None
        self.resources: LocalResources | None = None

    def __enter__(self) -> LocalAws:
        use_fake_credentials()
        endpoint = self._spawn() if self._own_process else self._thread()
        # moto keeps its state per process, not per server: start from empty so nothing leaks between uses.
        httpx.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
        s3, sqs = (aws.client(name, region="us-east-1", endpoint_url=endpoint) for name in ("s3", "sqs"))
        s3.create_bucket(Bucket=self._bucket)
        dlq_url = sqs.create_queue(QueueName=f"{self._queue}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(self._max_receive_count)}
        queue_url = sqs.create_queue(
            QueueName=self._queue,
            Attributes={
                "VisibilityTimeout": str(self._visibility_timeout),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
        self.resources = LocalResources(endpoint, self._bucket, queue_url, dlq_url, self._max_receive_count)
        return self

    def _thread(self) -> str:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def _spawn(self) -> str:
        with socket.socket() as probe:  # a free port; moto's command line has no "any port" option
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto's server exited with code {self._process.returncode}")
            try:
                httpx.get(f"{endpoint}/moto-api/data.json", timeout=1)
                return endpoint
            except httpx.HTTPError:
                time.sleep(0.1)
        self._process.kill()
        raise RuntimeError("moto's server did not answer within 60 s")

    @property
    def server_pid(self) -> int | None:
        """The pid of moto's server when it runs in a process of its own."""
        return self._process.pid if self._process is not None else None

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()

    def settings(self, base: Settings | None = None, **overrides: Any) -> Settings:
        """Settings pointing a worker at these resources; loopback URLs are allowed since everything is local."""
        assert self.resources is not None, "use inside 'with'"
        r = self.resources
        return (base or Settings()).with_overrides(
            endpoint_url=r.endpoint_url,
            region="us-east-1",
            queue_url=r.queue_url,
            dlq_url=r.dlq_url,
            results_bucket=r.bucket,
            allow_http=True,
            allow_private_urls=True,
            **overrides,
        )

    def worker_env(self, *, secret: str, model_dir: Path, model: str = "tiny.en", **settings: object) -> dict[str, str]:
        """The environment for a ``whisper-worker run`` process against these resources: this process's
        environment without AWS or worker variables, fake credentials, loopback URLs allowed, and ``settings``
        as ``WHISPER_<NAME>`` variables (``max_idle_seconds=60`` → ``WHISPER_MAX_IDLE_SECONDS=60``)."""
        assert self.resources is not None, "use inside 'with'"
        r = self.resources
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WHISPER_", "POWERTOOLS_"))}
        env.update(_FAKE_CREDENTIALS)
        env.update(
            AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL=r.endpoint_url,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            WHISPER_QUEUE_URL=r.queue_url,
            WHISPER_DLQ_URL=r.dlq_url,
            WHISPER_RESULTS_BUCKET=r.bucket,
            WHISPER_WEBHOOK_SECRET=secret,
            WHISPER_DEFAULT_MODEL=model,
            WHISPER_MODEL_DIR=str(model_dir),
            WHISPER_DEVICE="cpu",
            WHISPER_ALLOW_HTTP="true",
            WHISPER_ALLOW_PRIVATE_URLS="true",
            WHISPER_WAIT_SECONDS="1",
            PYTHONUNBUFFERED="1",
        )
        env.update({f"WHISPER_{name.upper()}": str(value) for name, value in settings.items()})
        return env

    def client(self, service: str) -> Any:
        assert self.resources is not None, "use inside 'with'"
        return aws.client(service, region="us-east-1", endpoint_url=self.resources.endpoint_url)
