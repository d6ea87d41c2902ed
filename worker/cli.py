"""``whisper-worker``: run the worker, print the message schema, or run the local demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from worker.client.cli import add_client_commands

# The worker's and the demo's packages come with extras; the bare install is the client.
_EXTRA_PACKAGES = frozenset({"torch", "whisper", "numpy", "av", "httpx", "standardwebhooks", "aws_lambda_powertools"})


class MissingExtra(RuntimeError):
    """A command needs an install extra that is not installed."""


def _require(extra: str, *packages: str) -> None:
    import importlib.util

    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        names = ", ".join(missing)
        hint = f"pip install 'whisper-batch[{extra}]'"
        raise MissingExtra(f"this command needs the {extra} install ({names} missing): {hint}")


def _run(args: argparse.Namespace) -> int:
    _require("worker", *sorted(_EXTRA_PACKAGES))
    from worker.errors import WorkerUnfit
    from worker.ops.logs import logger
    from worker.service.app import build_worker
    from worker.service.settings import Settings

    settings = Settings.from_env().with_overrides(max_jobs=args.max_jobs, max_idle_seconds=args.max_idle_seconds)
    try:
        worker = build_worker(settings)
        worker.install_signal_handlers()
        stats = worker.run()
    except WorkerUnfit as exc:
        logger.error("worker cannot serve; exiting before taking any message", extra={"reason": str(exc)})
        return 3
    engine_stats = getattr(worker.processor.engine, "stats", None)  # the batched engine counts its passes
    extra = {"stats": vars(stats) | {"verdicts": len(stats.verdicts)}}
    if engine_stats is not None:
        extra["engine"] = engine_stats.snapshot()
    logger.info("worker stopped", extra=extra)
    if stats.abandoned or stats.handed_back:
        # A job thread is still inside the model; ending the interpreter normally would wait on it or abort in
        # torch. Its message and claim are already released, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from worker.contract import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    _require("local", *sorted(_EXTRA_PACKAGES), "moto")

    os.environ.setdefault("WHISPER_LOG_LEVEL", "WARNING")  # the demo prints its own report
    from worker.local.demo import run_demo

    return run_demo([Path(p) for p in args.audio], model=args.model, out=sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whisper-worker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="consume the jobs queue (settings from the environment)")
    run.add_argument("--max-jobs", type=int, help="stop after this many messages")
    run.add_argument("--max-idle-seconds", type=float, help="stop after this long without a message")
    run.set_defaults(handler=_run)

    schema = commands.add_parser("schema", help="print the JSON Schema of a job message")
    schema.set_defaults(handler=_schema)

    demo = commands.add_parser("demo", help="transcribe files through an embedded S3 + SQS on this machine")
    demo.add_argument("audio", nargs="*", help="audio or video files (default: a short sample)")
    demo.add_argument("--model", default="tiny.en", help="model name (default: tiny.en, bundled)")
    demo.set_defaults(handler=_demo)

    add_client_commands(commands)  # submit, status, fetch, estimate, dlq: see worker/client/cli.py
    from worker.ops.cli import register as add_ops_commands

    add_ops_commands(commands)  # models fetch|list, health: see worker/ops/cli.py
    return parser


def main(argv: list[str] | None = None) -> int:
    from worker.errors import SettingsError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except SettingsError as exc:
        print(f"whisper-worker: configuration error: {exc}", file=sys.stderr)
        return 2
    except MissingExtra as exc:
        print(f"whisper-worker: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
