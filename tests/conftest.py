"""Shared real parts: one Whisper engine per session, an embedded AWS and a callback receiver per test."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.together import all_at_once
from worker.engine import Engine
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver
from worker.service.app import build_engine, build_worker
from worker.service.runner import RunStats
from worker.service.settings import Settings

DATA = Path(__file__).parent / "data"
JFK = DATA / "jfk.flac"
JFK_TEXT = (
    "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
)
TEST_MODEL = "tiny.en"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def engine(model_dir: Path) -> Engine:
    return build_engine(Settings(model_dir=model_dir, default_model=TEST_MODEL, device="cpu"))


@pytest.fixture
def local_aws() -> Iterator[LocalAws]:
    with LocalAws(visibility_timeout=30, max_receive_count=3) as local:
        yield local


@pytest.fixture
def secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@pytest.fixture
def receiver(secret: str) -> Iterator[CallbackReceiver]:
    with CallbackReceiver(secret) as rx:
        yield rx


@pytest.fixture
def settings(local_aws: LocalAws, secret: str, model_dir: Path) -> Settings:
    return local_aws.settings(
        Settings(),
        webhook_secret=secret,
        model_dir=model_dir,
        default_model=TEST_MODEL,
        device="cpu",
        wait_seconds=1,
        max_idle_seconds=2.0,
        retry_base_seconds=1,
        callback_attempts=3,
    )


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


@pytest.fixture
def harness(local_aws: LocalAws, settings: Settings, engine: Engine, receiver: CallbackReceiver) -> Harness:
    return Harness(local_aws, settings, engine, receiver)


# --- the Dockerfile's install, started early so it runs beside the other tests ---------------------------

FRESH_INSTALL_TEST = "test_install_commands_work_in_a_fresh_virtualenv"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The install's test goes last, so the rest of the suite runs while it installs."""
    items.sort(key=lambda item: item.name == FRESH_INSTALL_TEST)


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.name == FRESH_INSTALL_TEST for item in session.items):
        from tests.test_dockerfile import FreshInstall

        root = Path(tempfile.mkdtemp(prefix="fresh-install-"))
        session.config.stash[_FRESH] = FreshInstall(root)


def pytest_sessionfinish(session: pytest.Session) -> None:
    install = session.config.stash.get(_FRESH, None)
    if install is not None:
        shutil.rmtree(install.root, ignore_errors=True)


_FRESH = pytest.StashKey["object"]()


@pytest.fixture
def fresh_install(request: pytest.FixtureRequest) -> object:
    install = request.config.stash.get(_FRESH, None)
    assert install is not None, "started in pytest_collection_finish"
    return install
