"""``whisper-worker submit | status | fetch | estimate | dlq | smoke``: the backend's client on the command line.

Data goes to stdout (a job id, the transcript, file paths, listings) so commands compose in scripts; progress
bars and diagnostics go to stderr. Exit status: 0 done, 1 the job failed, 2 bad arguments or configuration,
3 no such job / format / dead letter, 4 timed out waiting, 5 AWS refused or was unreachable.

The connection comes from ``--queue-url``/``--bucket``/``--dlq-url``/``--settled-url``/``--endpoint-url``/
``--region``, else from ``--stack NAME`` (the CloudFormation outputs), else from ``WHISPER_QUEUE_URL``,
``WHISPER_RESULTS_BUCKET``, ``WHISPER_DLQ_URL``, ``WHISPER_SETTLED_URL`` and ``AWS_ENDPOINT_URL``. Heavy imports
wait until a command runs: ``whisper-worker run`` pays nothing for them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.contract import OUTPUT_FORMATS
from worker.contract.message import MAX_SPEAKERS

if TYPE_CHECKING:
    from worker.client import JobStatus, TranscriptionClient

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_TIMEOUT, EXIT_SERVICE = 1, 2, 3, 4, 5
_REMOTE_PREFIXES = ("s3://", "https://", "http://")

Handler = Callable[[argparse.Namespace], int]


def add_client_commands(commands: Any) -> None:
    """Register submit, status, fetch, estimate and dlq on ``whisper-worker``'s subcommands."""
    connection = _connection_parser()

    submit = commands.add_parser(
        "submit", parents=[connection], help="send a job (uploading a local file first), optionally wait for it"
    )
    submit.add_argument("source", help="local audio/video file, s3://bucket/key or https:// URL")
    submit.add_argument("--model", help="Whisper model (default: the worker's WHISPER_DEFAULT_MODEL)")
    formats = ",".join(OUTPUT_FORMATS)
    submit.add_argument("--format", default="json", help=f"comma-separated: {formats} (default: json)")
    submit.add_argument("--language", help="spoken language, e.g. en (default: detect)")
    submit.add_argument("--task", choices=["transcribe", "translate"], help="default: transcribe")
    # Combinations are checked by the contract (as the worker will) before anything is uploaded or sent.
    submit.add_argument("--diarize", action="store_true", help="label who spoke when (SPEAKER_00, ...)")
    submit.add_argument(
        "--speakers",
        type=int,
        metavar="N",
        help=f"exact number of speakers, 1-{MAX_SPEAKERS} (needs --diarize; not with --min/--max-speakers)",
    )
    submit.add_argument("--min-speakers", type=int, metavar="N", help="fewest speakers to find (needs --diarize)")
    submit.add_argument("--max-speakers", type=int, metavar="N", help="most speakers to label (needs --diarize)")
    submit.add_argument("--callback-url", help="https:// URL for the signed result callback")
    submit.add_argument("--job-id", help="job id (default: a fresh one)")
    submit.add_argument(
        "--wait", action="store_true", help="wait for the result and print its text (asks for txt if needed)"
    )
    submit.add_argument("--timeout", type=_duration, default=3600.0, help="how long --wait waits (default: 1h)")
    submit.add_argument("--out", type=Path, help="write the transcripts to this directory (implies --wait)")
    submit.set_defaults(handler=_guarded(_submit))

    status = commands.add_parser("status", parents=[connection], help="show a job's state, progress or result")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_guarded(_status))

    fetch = commands.add_parser("fetch", parents=[connection], help="download a finished job's transcripts")
    fetch.add_argument("job_id")
    fetch.add_argument("--format", help="comma-separated formats (default: every format the job produced)")
    fetch.add_argument("--out", type=Path, default=Path("."), help="directory to write to (default: .)")
    fetch.set_defaults(handler=_guarded(_fetch))

    estimate = commands.add_parser("estimate", help="price transcribing this much audio, next to managed APIs")
    estimate.add_argument("--duration", required=True, type=_duration, help="audio length: 90s, 45m, 1h30m, 01:30:00")
    estimate.add_argument("--model", default="base", help="Whisper model (default: base)")
    estimate.add_argument("--instance", default="g5.xlarge", help="EC2 instance type (default: g5.xlarge)")
    estimate.add_argument("--spot", action="store_true", help="spot instead of on-demand price")
    estimate.add_argument("--json", action="store_true", help="print the estimate as JSON")
    estimate.set_defaults(handler=_guarded(_estimate))

    dlq = commands.add_parser("dlq", help="inspect or redrive the dead-letter queue")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_commands.add_parser("list", parents=[connection], help="list dead letters and why")
    dlq_list.add_argument("--limit", type=int, default=100, help="at most this many (default: 100)")
    dlq_list.add_argument("--json", action="store_true", help="print JSON lines, one per message")
    dlq_list.set_defaults(handler=_guarded(_dlq_list))
    redrive = dlq_commands.add_parser("redrive", parents=[connection], help="send dead letters back to the queue")
    redrive.add_argument("ids", nargs="*", metavar="JOB_ID", help="job ids (or message ids) to send back")
    redrive.add_argument("--all", action="store_true", help="send every dead letter back")
    redrive.set_defaults(handler=_guarded(_dlq_redrive))
    settle = dlq_commands.add_parser(
        "settle",
        parents=[connection],
        help="give every dead letter a final result.json and its failure callback, then set it aside",
    )
    settle.add_argument(
        "--webhook-secret-arn",
        help="read the webhook secret from Secrets Manager (default: WHISPER_WEBHOOK_SECRET; none: no callbacks)",
    )
    settle.add_argument("--allow-http", action="store_true", help="allow http:// callbacks (WHISPER_ALLOW_HTTP)")
    settle.add_argument(
        "--allow-private-urls",
        action="store_true",
        help="allow callbacks to private and loopback addresses (WHISPER_ALLOW_PRIVATE_URLS)",
    )
    settle.add_argument("--limit", type=int, help="at most this many (default: every one)")
    settle.add_argument("--json", action="store_true", help="print JSON lines, one per message")
    settle.set_defaults(handler=_guarded(_dlq_settle))
    _add_smoke_command(commands, connection)


def _add_smoke_command(commands: Any, connection: argparse.ArgumentParser) -> None:
    smoke = commands.add_parser(
        "smoke",
        parents=[connection],
        help="prove a deployment works: a speech sample through the queue (and the HTTPS API), every format checked",
    )
    smoke.add_argument(
        "--audio", type=Path, help="a recording to send (default: the source tree's 11-s sample, worker/data/jfk.opus)"
    )
    smoke.add_argument(
        "--expect", help="words the recording says, checked in every format (default with --audio: any words)"
    )
    smoke.add_argument("--api-url", help="the HTTPS API's URL (default: the stack's ApiUrl output, if any)")
    smoke.add_argument("--api-key", help="API key for an apiAuth=apiKey stack (default: sign with SigV4)")
    smoke.add_argument("--no-api", action="store_true", help="test the queue only, even if the stack has an API")
    smoke.add_argument(
        "--callback-url", help="a receiver you run: the job asks for a callback and result.json must say delivered"
    )
    smoke.add_argument("--model", help="Whisper model (default: the worker's WHISPER_DEFAULT_MODEL)")
    smoke.add_argument(
        "--timeout", type=_duration, default=1800.0, help="per job, e.g. 30m (default: 30m, room for a cold start)"
    )
    smoke.add_argument("--instance", default="g5.xlarge", help="instance type to price the run at (default: g5.xlarge)")
    smoke.add_argument("--spot", action="store_true", help="price at spot rather than on-demand")
    smoke.set_defaults(handler=_guarded(_smoke))


def _smoke(args: argparse.Namespace) -> int:
    from worker.client import TranscriptionClient
    from worker.client.smoke import ApiTarget, Step, cost_lines, run_smoke
    from worker.sample import SAMPLE_WORDS, SampleMissing, sample_audio

    try:
        audio = args.audio or sample_audio()
    except SampleMissing as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    if not audio.is_file():
        _err(f"error: {audio} is not a file")
        return EXIT_USAGE
    expect = args.expect if args.audio else args.expect or SAMPLE_WORDS
    outputs: dict[str, str] = {}
    if args.stack:
        endpoint = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        outputs = TranscriptionClient.from_stack(args.stack, region=args.region, endpoint_url=endpoint).stack_outputs
    client = _client(args)
    api_url = None if args.no_api else (args.api_url or outputs.get("ApiUrl"))
    api = ApiTarget(api_url, args.api_key or None) if api_url else None

    def say(step: Step) -> None:
        mark = "ok  " if step.ok else "FAIL"
        print(f"{mark} {step.name:<16} {step.seconds:6.1f} s  {step.detail}", flush=True)

    report = run_smoke(
        client,
        api=api,
        callback_url=args.callback_url,
        model=args.model,
        timeout=args.timeout,
        audio=audio,
        expect=expect,
        say=say,
    )
    for line in cost_lines(report, args.instance, args.spot):
        print(line)
    failed = report.failed_step
    if failed is not None:
        _err(f"smoke test failed at {failed.name!r}: {failed.detail}")
        return EXIT_FAILED
    print("smoke test passed" + ("" if api else " (queue only: no HTTPS API)"))
    return 0


def _connection_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("connection (default: WHISPER_QUEUE_URL, WHISPER_RESULTS_BUCKET, ...)")
    group.add_argument("--stack", help="read the queue, bucket and DLQ from this CloudFormation stack's outputs")
    group.add_argument("--queue-url", help="jobs queue URL")
    group.add_argument("--bucket", help="results bucket (uploads go under audio/)")
    group.add_argument("--dlq-url", help="dead-letter queue URL (default: from the queue's redrive policy)")
    group.add_argument("--settled-url", help="settled-letters queue URL (default: WHISPER_SETTLED_URL)")
    group.add_argument("--endpoint-url", help="AWS endpoint, e.g. LocalStack or moto (default: AWS_ENDPOINT_URL)")
    group.add_argument("--region", help="AWS region (default: AWS_REGION)")
    return parser


def _duration(text: str) -> float:
    from worker.client.pricing import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _guarded(handler: Handler) -> Handler:
    """Map the client's errors onto exit codes and one clear line on stderr."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from worker.client import errors

        codes: list[tuple[type[Exception], int]] = [
            (errors.JobFailed, EXIT_FAILED),
            (errors.JobNotFound, EXIT_NOT_FOUND),
            (errors.WaitTimeout, EXIT_TIMEOUT),
            (errors.ServiceError, EXIT_SERVICE),
            (errors.TranscriptionError, EXIT_USAGE),  # validation, configuration, estimate
        ]
        try:
            return handler(args)
        except errors.TranscriptionError as exc:
            _err(f"error: {exc}")
            return next(code for kind, code in codes if isinstance(exc, kind))

    return run


def _err(message: str) -> None:
    print(f"whisper-worker: {message}", file=sys.stderr)


def _client(args: argparse.Namespace) -> TranscriptionClient:
    """Flags first, then the stack's outputs, then the environment."""
    from worker.client import TranscriptionClient

    endpoint = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    outputs: dict[str, str] = {}
    if args.stack:
        outputs = TranscriptionClient.from_stack(args.stack, region=args.region, endpoint_url=endpoint).stack_outputs
    return TranscriptionClient.from_env(
        queue_url=args.queue_url or outputs.get("QueueUrl"),
        bucket=args.bucket or outputs.get("BucketName"),
        dlq_url=args.dlq_url or outputs.get("DlqUrl"),
        settled_url=args.settled_url or outputs.get("SettledLettersUrl"),
        endpoint_url=endpoint,
        region=args.region,
    )


def _formats(text: str | None) -> list[str] | None:
    return [part.strip().lower() for part in text.split(",") if part.strip()] if text else None


# ---------------------------------------------------------------------------------------------- submit


def _submit(args: argparse.Namespace) -> int:
    from rich.console import Console

    client = _client(args)
    console = Console(stderr=True)
    options: dict[str, Any] = {
        "model": args.model,
        "formats": _formats(args.format) or ["json"],
        "language": args.language,
        "task": args.task,
        "diarize": args.diarize or None,  # left out unless asked for, like the other defaults
        "speakers": args.speakers,
        "min_speakers": args.min_speakers,
        "max_speakers": args.max_speakers,
        "callback_url": args.callback_url,
    }
    options = {key: value for key, value in options.items() if value is not None}
    requested = list(options["formats"])
    waiting = bool(args.wait or args.out)
    if waiting and not {"json", "txt"} & set(requested):
        options["formats"] = [*requested, "txt"]  # to print the text; --out still writes only what was asked
    if args.source.startswith(_REMOTE_PREFIXES):
        job_id = client.submit(audio=args.source, **options, **({"job_id": args.job_id} if args.job_id else {}))
    else:
        job_id = _upload(client, console, Path(args.source), args.job_id, options)
    console.print(f"submitted {job_id}", markup=False, highlight=False)
    if not waiting:
        print(job_id)
        return 0
    status = _follow(client, console, job_id, args.timeout)
    if not status.succeeded:
        _err(f"job {job_id} failed: {status.error_code}: {status.error_message}")
        return EXIT_FAILED
    if args.out:
        for fmt in requested:
            path = client.download(job_id, fmt, args.out / f"{job_id}.{fmt}")
            console.print(f"wrote {path}", markup=False, highlight=False)
    print(client.text(job_id))
    return 0


def _upload(client: TranscriptionClient, console: Any, path: Path, job_id: str | None, options: dict) -> str:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    if not path.is_file():
        from worker.client.errors import JobValidationError

        raise JobValidationError(f"{path} is not a file (nor an s3:// or https:// URL)")
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"uploading {path.name}", total=path.stat().st_size)
        return client.upload_and_submit(
            path, job_id=job_id, progress=lambda sent: progress.advance(task, sent), **options
        )


def _follow(client: TranscriptionClient, console: Any, job_id: str, timeout: float) -> JobStatus:
    """Wait for the job with a progress bar fed by the worker's status.json (indeterminate until it reports)."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"{job_id}: queued", total=None)

        def update(status: JobStatus) -> None:
            known = status.percent is not None
            progress.update(
                task,
                description=f"{job_id}: {status.state}",
                total=100 if known else None,
                completed=status.percent if known else 0,
            )

        return client.wait(job_id, timeout, on_update=update, max_poll_interval=3.0)


# ---------------------------------------------------------------------------------------- status, fetch


def _status(args: argparse.Namespace) -> int:
    status = _client(args).status(args.job_id)
    if args.json:
        result = status.result.to_dict() if status.result else None
        print(json.dumps(asdict(status) | {"result": result, "error_code": status.error_code}, indent=2))
        return 0
    percent = f" {status.percent:.0f}%" if status.percent is not None and not status.done else ""
    print(f"{status.job_id}: {status.state}{percent}")
    result = status.result
    if status.state == "completed" and result is not None:
        print(f"  model      {result.model}")
        print(f"  language   {result.language}")
        duration, processing = result.duration_seconds, result.processing_seconds
        if isinstance(duration, int | float) and isinstance(processing, int | float):
            print(f"  audio      {duration:.1f} s, transcribed in {processing:.1f} s")
        for fmt, key in result.results.items():
            print(f"  {fmt:<10} s3://{result.bucket or ''}/{key}")
    elif status.state == "failed":
        print(f"  error      {status.error_code}: {status.error_message}")
    if status.updated_at:
        print(f"  updated    {status.updated_at}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    client = _client(args)
    formats = _formats(args.format) or list(client.result_keys(args.job_id))
    for fmt in formats:
        print(client.download(args.job_id, fmt, args.out / f"{args.job_id}.{fmt}"))
    return 0


# -------------------------------------------------------------------------------------------- estimate


def _estimate(args: argparse.Namespace) -> int:
    from worker.client.pricing import estimate_cost

    estimate = estimate_cost(args.duration, args.model, args.instance, args.spot)
    if args.json:
        print(json.dumps(asdict(estimate), indent=2))
        return 0
    price = "spot" if estimate.spot else "on-demand"
    print(
        f"{format_duration(estimate.duration_seconds)} of audio, model {estimate.model} on {estimate.instance_type} "
        f"({price}, ${estimate.hourly_usd:g}/h)"
    )
    print(f"  throughput   {estimate.throughput.times_realtime:.1f}x realtime ({estimate.throughput.note})")
    kind = "GPU time" if estimate.gpu_seconds else "CPU time"
    print(f"  {kind:<12} {estimate.instance_seconds:.1f} s")
    print(f"  cost         ${estimate.cost_usd:.4f}")
    for managed in estimate.managed:
        ratio = f"{managed.cost_usd / estimate.cost_usd:.0f}x as much" if estimate.cost_usd else ""
        print(f"  {managed.name:<18} ${managed.cost_usd:.4f}  {ratio}  ({managed.source})")
    return 0


def format_duration(seconds: float) -> str:
    """``1h30m``, ``45m``, ``1m30s``, ``12.5s``: the shape ``--duration`` reads."""
    whole = int(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if value)


# ------------------------------------------------------------------------------------------------- dlq


def _dlq_list(args: argparse.Namespace) -> int:
    letters = _client(args).dead_letters(limit=args.limit)
    if args.json:
        for letter in letters:
            print(json.dumps(letter.as_dict()))
        return 0
    print(f"{len(letters)} message(s) in the DLQ")
    for letter in letters:
        when = f"settled {letter.settled_at}" if letter.settled_at else f"since {letter.sent_at or '?'}"
        print(f"{letter.job_id or '-'}  {letter.message_id}  {letter.reason}  ({when})")
    return 0


def _dlq_redrive(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        _err("error: name the job ids (or message ids) to redrive, or pass --all, not both")
        return EXIT_USAGE
    moved = _client(args).redrive(None if args.all else args.ids)
    print(f"redrove {len(moved)} message(s) to the jobs queue")
    for letter in moved:
        print(f"{letter.job_id or '-'}  {letter.message_id}")
    missing = sorted(set(args.ids) - {d.job_id for d in moved} - {d.message_id for d in moved})
    if missing:
        _err(f"error: not in the DLQ: {', '.join(missing)}")
        return EXIT_NOT_FOUND
    return 0


def _dlq_settle(args: argparse.Namespace) -> int:
    from worker.client.settle import Unsettled

    client = _client(args)
    secret = _webhook_secret(client, args.webhook_secret_arn)
    allow_http = args.allow_http or _env_true("WHISPER_ALLOW_HTTP")
    allow_private = args.allow_private_urls or _env_true("WHISPER_ALLOW_PRIVATE_URLS")
    if not secret:
        _err(
            "no webhook secret (WHISPER_WEBHOOK_SECRET or --webhook-secret-arn): results are written, callbacks skipped"
        )
    counts = {"settled": 0, "already final": 0, "superseded": 0, "could not settle": 0}
    outcomes = client.settle(
        webhook_secret=secret, allow_http=allow_http, allow_private=allow_private, limit=args.limit
    )
    for outcome in outcomes:
        failed = isinstance(outcome, Unsettled)
        counts["could not settle" if failed else outcome.action] += 1
        if args.json:
            print(json.dumps({"could_not_settle": outcome.error} if failed else outcome.as_dict()))
        else:
            print(outcome.line())
    summary = ", ".join(f"{count} {what}" for what, count in counts.items())
    print(f"{sum(counts.values())} message(s): {summary}", file=sys.stderr if args.json else sys.stdout)
    if not client.settled_url:
        _err("no settled-letters queue (--settled-url, WHISPER_SETTLED_URL or --stack): they stay in the DLQ")
    return EXIT_SERVICE if counts["could not settle"] else 0


def _webhook_secret(client: TranscriptionClient, arn: str | None) -> str | None:
    if not arn:
        return os.environ.get("WHISPER_WEBHOOK_SECRET") or None
    from worker import aws
    from worker.client.errors import ServiceError
    from worker.client.settle import SettleError, read_secret

    secrets = aws.client("secretsmanager", region=client.region, endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    try:
        return read_secret(secrets, arn)
    except SettleError as exc:
        raise ServiceError(str(exc)) from exc


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
