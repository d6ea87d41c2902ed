"""One local deployment for the Node.js client's tests: moto's S3/SQS server with the bucket, jobs queue and DLQ
(``worker.local.moto_server.LocalAws``) and one real ``python -m worker.cli run`` process serving tiny.en.

Prints the resources as one JSON line on stdout, then keeps everything up until its stdin closes (the test runner
closes it, or dies), or ``--seconds`` pass; then stops the worker (SIGTERM, then SIGKILL) and the server. Everything
listens on 127.0.0.1 only.

    python clients/node/test/support/local_stack.py --model-dir /tmp/whisper-node-models
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(REPO))  # the worker package, whether or not the venv installed it

from worker.local.moto_server import LocalAws  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=os.environ.get("WHISPER_NODE_MODEL_DIR", "/tmp/whisper-node-models"))
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--seconds", type=float, default=900.0, help="stop after this long whatever happens")
    args = parser.parse_args()

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(tempfile.mkdtemp(prefix="whisper-node-worker-")) / "worker.log"

    with LocalAws(visibility_timeout=30, max_receive_count=3) as local:
        r = local.resources
        assert r is not None
        env = local.worker_env(
            secret=secret,
            model_dir=model_dir,
            model=args.model,
            retry_base_seconds=1,
            log_level="WARNING",
        )
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "run"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
            )
        stopping = threading.Event()

        def watch() -> None:
            code = worker.wait()
            if not stopping.is_set():
                print(f"local_stack: the worker exited early with {code}; log: {log_path}", file=sys.stderr, flush=True)

        threading.Thread(target=watch, daemon=True).start()
        print(
            json.dumps(
                {
                    "endpointUrl": r.endpoint_url,
                    "bucket": r.bucket,
                    "queueUrl": r.queue_url,
                    "dlqUrl": r.dlq_url,
                    "maxReceiveCount": r.max_receive_count,
                    "secret": secret,
                    "workerPid": worker.pid,
                    "workerLog": str(log_path),
                }
            ),
            flush=True,
        )
        # Until the parent closes our stdin (or dies, which closes it), or the time is up.
        reader = threading.Thread(target=sys.stdin.read, daemon=True)
        reader.start()
        reader.join(timeout=args.seconds)
        stopping.set()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
