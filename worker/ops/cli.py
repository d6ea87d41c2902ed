"""Operator commands: ``whisper-worker models fetch|list`` and ``whisper-worker health [--json]``.

Registered into cli.py's parser by ``register``; everything heavy (torch, boto3, whisper) is imported inside the
handlers so ``whisper-worker --help`` stays fast. Both commands print their report on stdout and send log lines
to stderr, so ``--json`` output can be piped straight into ``jq``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO


def register(commands: Any) -> None:
    """Add ``models`` and ``health`` to the ``whisper-worker`` subcommands."""
    models = commands.add_parser("models", help="fetch official checkpoints into the model directory, list models")
    actions = models.add_subparsers(dest="models_command", required=True)
    fetch = actions.add_parser(
        "fetch", help="download official checkpoints into WHISPER_MODEL_DIR, sha256 verified (build time)"
    )
    fetch.add_argument("names", nargs="+", help="model names, space- or comma-separated (e.g. base small.en)")
    fetch.set_defaults(handler=_models_fetch)
    listing = actions.add_parser("list", help="models this worker can serve without downloading")
    listing.add_argument("--verify", action="store_true", help="check every official checkpoint's sha256")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(handler=_models_list)

    health = commands.add_parser(
        "health", help="check device, model, results bucket, jobs queue and DLQ; exit 1 if any check fails"
    )
    health.add_argument("--json", action="store_true", help="JSON instead of a table")
    health.add_argument("--model", help="model to load (default: WHISPER_DEFAULT_MODEL)")
    health.add_argument("--skip-model", action="store_true", help="do not load a model (fast liveness check)")
    health.set_defaults(handler=_health)


def _logs_to_stderr() -> None:
    from worker.ops.logs import logger

    logger.registered_handler.setStream(sys.stderr)  # type: ignore[attr-defined]


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)


def _mib(size: int | None) -> str:
    return "-" if size is None else f"{size / 1024**2:.1f} MiB"


# ------------------------------------------------------------------------------------------- models


def _models_fetch(args: argparse.Namespace) -> int:
    _logs_to_stderr()
    from worker.errors import JobError
    from worker.models import download
    from worker.service.settings import Settings

    settings = Settings.from_env()
    names = [n.strip().lower() for item in args.names for n in item.split(",") if n.strip()]
    failures = 0
    for name in names:
        try:
            spec = download.official(name, settings.model_mirror)
            print(f"{name}: fetching {spec.url}", file=sys.stderr)
            fetched = download.fetch(
                spec, settings.model_dir, timeout=settings.fetch_timeout, progress=_progress_printer(name)
            )
        except JobError as exc:
            failures += 1
            print(f"{name}: FAILED: {exc.message}", file=sys.stderr)
            continue
        print(f"{name}: {fetched.status}, {_mib(fetched.bytes)}, sha256 {spec.sha256[:12]}... ok: {fetched.path}")
    return 1 if failures else 0


def _progress_printer(name: str) -> Any:
    shown = {"step": -1}

    def show(done: int, total: int | None) -> None:
        if not total:
            return
        step = int(10 * done / total)
        if step > shown["step"]:
            shown["step"] = step
            print(f"{name}: {10 * step}% of {_mib(total)}", file=sys.stderr)

    return show


def _model_rows(settings: Any, verify: bool) -> list[dict[str, Any]]:
    import os

    from worker.models import download
    from worker.models.cache import BUNDLED

    rows: list[dict[str, Any]] = []
    for name, url in download.official_models().items():
        path = settings.model_dir / os.path.basename(url)
        if not path.is_file():
            continue
        status = "present"
        if verify:
            status = "verified" if download.sha256_file(path) == url.split("/")[-2] else "SHA256 MISMATCH"
        rows.append(
            {"name": name, "source": "official", "status": status, "bytes": path.stat().st_size, "path": str(path)}
        )
    for name, bundle in BUNDLED.items():
        if not bundle.installed():
            continue
        converted = settings.model_dir / "converted" / f"{name}-{bundle.sha256[:16]}.pt"
        rows.append(
            {
                "name": name,
                "source": f"bundled ({', '.join(bundle.packages)})",
                "status": "converted" if converted.is_file() else "installed (converts on first load)",
                "bytes": converted.stat().st_size if converted.is_file() else None,
                "path": str(converted) if converted.is_file() else None,
            }
        )
    for name, source in settings.model_sources.items():
        rows.append({"name": name, "source": source, "status": "configured", "bytes": None, "path": None})
    for row in rows:
        row["default"] = row["name"] == settings.default_model
    return rows


def _models_list(args: argparse.Namespace) -> int:
    _logs_to_stderr()
    from worker.service.settings import Settings

    settings = Settings.from_env()
    rows = _model_rows(settings, args.verify)
    speakers = _diarization_rows(settings)
    bad = [row for row in rows + speakers if row["status"] == "SHA256 MISMATCH"]
    default_ok = any(row["default"] for row in rows)
    if args.json:
        report = {
            "model_dir": str(settings.model_dir),
            "default_model": settings.default_model,
            "default_available": default_ok,
            "download_enabled": settings.model_download,
            "models": rows,
            "diarization": speakers,
        }
        print(json.dumps(report, indent=2))
        return 1 if bad else 0
    print(f"model directory: {settings.model_dir}  (downloads at run time: {settings.model_download})")
    if rows:
        table = [["NAME", "SOURCE", "STATUS", "SIZE", "PATH"]]
        for row in rows:
            name = f"{row['name']} *" if row["default"] else row["name"]
            table.append([name, row["source"], row["status"], _mib(row["bytes"]), row["path"] or "-"])
        _table(table, sys.stdout)
    else:
        print("no models available here")
    suffix = "" if default_ok else " (NOT available here: jobs that use it will fail with unknown_model)"
    print(f"* default model: {settings.default_model}{suffix}")
    print("speaker diarization (diarize: true):")
    table = [["NAME", "SOURCE", "STATUS", "PATH"]]
    table += [[row["name"], row["source"], row["status"], row["path"] or "-"] for row in speakers]
    _table(table, sys.stdout)
    return 1 if bad else 0


def _diarization_rows(settings: Any) -> list[dict[str, Any]]:
    from worker.diarization.choose import inventory

    return inventory(settings.diarization_model)


# ------------------------------------------------------------------------------------------- health


def _health(args: argparse.Namespace) -> int:
    _logs_to_stderr()
    from worker.ops.health import run_checks
    from worker.service.settings import Settings

    checks = run_checks(Settings.from_env(), model=args.model, skip_model=args.skip_model)
    healthy = all(check.ok for check in checks)
    if args.json:
        print(json.dumps({"healthy": healthy, "checks": [check.as_dict() for check in checks]}, indent=2))
    else:
        table = [["CHECK", "STATUS", "TIME", "DETAIL"]]
        table += [[c.name, "ok" if c.ok else "FAIL", f"{c.seconds:.2f}s", c.detail] for c in checks]
        _table(table, sys.stdout)
        failed = [c.name for c in checks if not c.ok]
        print("healthy" if healthy else f"UNHEALTHY: {', '.join(failed)} failed")
    return 0 if healthy else 1
