"""Everything the throughput benchmark needs on an offline GPU machine, besides the repo itself, in ``.gpu/``.

That machine has Python 3.12 with torch, numpy, requests, werkzeug, jinja2, httpx and friends, but no internet and
none of this project's other dependencies; the repo and ``.gpu/`` travel together, 64 MiB at most. So:

* ``site.tar.xz``: the missing packages (openai-whisper, boto3, moto's server, pydantic, ...) installed from
  CPython 3.12 manylinux wheels into one site-packages tree, with botocore's service models and moto's services
  cut down to what S3 + SQS on loopback need (the rest is ~80 % of their size);
* ``tiny.en.npz``: the bundled tiny.en checkpoint as int8 rows (``bench.weights_codec``);
* ``corpus.tar.xz``: the default benchmark corpus as 16 kHz mono 16-bit WAVs, which decode without PyAV.

    python -m bench.gpu_bundle            # build .gpu/ (wheels are cached in build/gpu-bundle/), check, size it
    python -m bench.gpu_bundle check      # in the target interpreter: the carried packages import and work
    python -m bench.gpu_bundle extract ARCHIVE DEST

Only the standard library is imported at module level: ``check`` and ``extract`` run on the GPU machine too.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import wave
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPU_DIR = ROOT / ".gpu"
WORK_DIR = ROOT / "build" / "gpu-bundle"  # downloaded wheels and staging; never travels
BUDGET_MIB = 60.0  # the upload takes 64 MiB; keep some room
MODEL = "tiny.en"

TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"]
for _platform in ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"):
    TARGET += ["--platform", _platform]

# What the GPU machine lacks, at this venv's versions. typing-extensions is there but may be older than the 4.16
# pydantic 2.14 needs; being first on PYTHONPATH, ours wins (it is backwards compatible for torch).
CARRIED = (
    "openai-whisper",
    "more-itertools",
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "moto",
    "flask",
    "flask-cors",
    "blinker",
    "itsdangerous",
    "xmltodict",
    "responses",
    "cryptography",
    "cffi",
    "pycparser",
    "py-partiql-parser",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
    "standardwebhooks",
    "aws-lambda-powertools",
    "jiwer",
    "rapidfuzz",
)
WHISPER_VERSION = "20250625"  # sdist only on PyPI: built into a wheel here
# Stand-ins for what the GPU machine already has, used only by the local 3.12 check of the site tarball.
HOST = (
    "werkzeug",
    "jinja2",
    "markupsafe",
    "requests",
    "urllib3",
    "charset-normalizer",
    "idna",
    "certifi",
    "python-dateutil",
    "six",
    "pyyaml",
    "click",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
)

# botocore ships a model for every AWS service (~30 MB); the worker talks to S3 and SQS, moto's server to STS too.
BOTOCORE_SERVICES = frozenset({"s3", "sqs", "sts"})
BOTO3_RESOURCES = frozenset({"s3", "sqs"})
# moto's services that serving S3 + SQS imports: found by starting ThreadedMotoServer on a pruned copy until the
# bucket, queue, object and message round trips in ``check`` passed (s3 imports cloudwatch, events, iam, sts).
MOTO_SERVICES = frozenset(
    {"core", "moto_api", "moto_server", "utilities", "s3", "s3bucket_path", "sqs", "sts", "iam", "cloudwatch", "events"}
)
WHISPER_ASSETS = ("gpt2.tiktoken", "multilingual.tiktoken", "mel_filters.npz")


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def log(message: str) -> None:
    print(f"gpu-bundle: {message}", flush=True)


# ---------------------------------------------------------------------------------------------- packages


def _normal(name: str) -> str:
    return name.lower().replace("-", "_")


def version(package: str) -> str:
    return WHISPER_VERSION if package == "openai-whisper" else metadata.version(package)


def _have_wheel(wheels: Path, package: str, ver: str) -> bool:
    prefix = f"{_normal(package)}-{ver}-"
    return any(w.name.lower().startswith(prefix) for w in wheels.glob("*.whl"))


def download(packages: tuple[str, ...], wheels: Path) -> None:
    """CPython 3.12 manylinux wheels of ``packages`` at this venv's versions, fetched once into ``wheels``."""
    wheels.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    if "openai-whisper" in packages and not _have_wheel(wheels, "openai-whisper", WHISPER_VERSION):
        build = [*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
        subprocess.run([*build, f"openai-whisper=={WHISPER_VERSION}"], check=True)
    wanted = [
        f"{p}=={version(p)}" for p in packages if p != "openai-whisper" and not _have_wheel(wheels, p, version(p))
    ]
    if wanted:
        log(f"downloading {len(wanted)} wheel(s) for CPython 3.12")
        subprocess.run([*pip, "download", "--quiet", "--no-deps", *TARGET, "-d", str(wheels), *wanted], check=True)


def install(packages: tuple[str, ...], wheels: Path, target: Path) -> None:
    """``packages`` installed into the plain directory ``target`` as CPython 3.12 would have them."""
    shutil.rmtree(target, ignore_errors=True)
    files = []
    for package in packages:
        prefix = f"{_normal(package)}-{version(package)}-"
        found = sorted(w for w in wheels.glob("*.whl") if w.name.lower().startswith(prefix))
        if not found:
            raise SystemExit(f"gpu-bundle: no wheel for {package} {version(package)} in {wheels}")
        files.append(str(found[0]))
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(target)]
    subprocess.run([*cmd, *TARGET, *files], check=True)
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts pointing at this machine's python


def _keep_only(directory: Path, keep: frozenset[str]) -> int:
    """Remove every subdirectory of ``directory`` not named in ``keep``; top-level files stay. Bytes removed."""
    removed = 0
    for child in directory.iterdir():
        if child.is_dir() and child.name not in keep:
            removed += sum(f.stat().st_size for f in child.rglob("*") if f.is_file())
            shutil.rmtree(child)
    return removed


def prune(site: Path) -> None:
    removed = _keep_only(site / "botocore" / "data", BOTOCORE_SERVICES)
    removed += _keep_only(site / "boto3" / "data", BOTO3_RESOURCES)
    removed += _keep_only(site / "moto", MOTO_SERVICES)
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache)
    missing = [a for a in WHISPER_ASSETS if not (site / "whisper" / "assets" / a).is_file()]
    if missing:
        raise SystemExit(f"gpu-bundle: whisper's assets are missing from the staged copy: {', '.join(missing)}")
    log(f"pruned {mib(removed)} of unused service models and moto services")


# ---------------------------------------------------------------------------------------------- archives


def make_tar(source: Path, out: Path, arcname: str = ".") -> Path:
    """An xz tarball of ``source``; GNU tar + multi-threaded xz, entries sorted and owned by root for stable output."""
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, XZ_OPT="-9 -T2")
    cmd = ["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-cJf", str(out)]
    subprocess.run([*cmd, "-C", str(source.parent if arcname != "." else source), arcname], check=True, env=env)
    return out


def extract(archive: Path, dest: Path) -> None:
    """Unpack with Python's tarfile: the GPU machine may lack the xz binary, never the lzma module."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(dest, filter="data")


# ---------------------------------------------------------------------------------------------- parts


def build_site(work: Path, out: Path) -> Path:
    wheels = work / "wheels"
    download(CARRIED, wheels)
    site = work / "site"
    install(CARRIED, wheels, site)
    prune(site)
    log("compressing the site-packages tree (about a minute) ...")
    return make_tar(site, out)


def build_weights(out: Path) -> Path:
    from bench import weights_codec

    return weights_codec.encode(weights_codec.checkpoint_path(MODEL), out)


def _is_plain_wav(path: Path) -> bool:
    """16 kHz mono 16-bit PCM: what ``worker.audio.decode`` reads without PyAV."""
    try:
        with wave.open(str(path), "rb") as wav:
            return (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16_000, 1, 2)
    except (wave.Error, EOFError, OSError):
        return False


def build_corpus(work: Path, out: Path) -> Path:
    """The default corpus, every item as a plain WAV (JFK is FLAC in the repo), under ``corpus/`` in a tarball."""
    from bench import corpus as corpus_mod

    built = corpus_mod.build_default()
    fingerprint = corpus_mod.read_manifest(built.root)[1]
    root = work / "corpus"
    shutil.rmtree(root, ignore_errors=True)
    items = []
    for item in built.items:
        relative = item.audio.relative_to(built.root).with_suffix(".wav")
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if _is_plain_wav(item.audio):
            shutil.copyfile(item.audio, target)
        else:
            import numpy as np

            from worker.audio.decode import decode_audio
            from worker.audio.wav import write_wav

            samples = decode_audio(item.audio, max_seconds=24 * 3600)
            write_wav(target, np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16))
        items.append(corpus_mod.Item(item.name, target, item.text, item.seconds, item.kind))
    corpus_mod.write_manifest(root, items, fingerprint)
    log(f"corpus: {len(items)} items, {sum(i.seconds for i in items):.0f} s of audio")
    return make_tar(root, out, arcname="corpus")


def repo_bytes() -> int:
    """What travels of the repo: tracked files plus untracked ones git does not ignore."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    paths = {ROOT / p for p in listing.decode().split("\0") if p}
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


# ---------------------------------------------------------------------------------------------- checks


def check() -> None:
    """In the interpreter that will run the benchmark: every carried package imports, moto serves S3 + SQS."""
    import importlib.util

    import boto3
    import jiwer
    import pydantic
    from standardwebhooks.webhooks import Webhook

    import worker.contract
    import worker.local.receiver
    import worker.ops.logs
    import worker.ops.metrics
    import worker.service.callback
    import worker.service.fetch
    import worker.service.store  # noqa: F401  (imports are the check)
    from worker.local.moto_server import LocalAws

    started = time.monotonic()
    with LocalAws(bucket="bundle-check", queue="bundle-check") as local:
        assert local.resources is not None
        s3, sqs = local.client("s3"), local.client("sqs")
        s3.put_object(Bucket=local.resources.bucket, Key="k", Body=b"hello")
        assert s3.get_object(Bucket=local.resources.bucket, Key="k")["Body"].read() == b"hello"
        queue = local.resources.queue_url
        sqs.send_message(QueueUrl=queue, MessageBody="m")
        messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1, AttributeNames=["All"])["Messages"]
        assert messages[0]["Body"] == "m"
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=messages[0]["ReceiptHandle"])
    moto_seconds = time.monotonic() - started

    assert abs(jiwer.wer("a b c d", "a b x d") - 0.25) < 1e-9
    assert pydantic.TypeAdapter(int).validate_python("3") == 3
    hook, now = Webhook("whsec_" + base64.b64encode(b"k" * 24).decode()), datetime.now(UTC)
    headers = {"webhook-id": "m1", "webhook-timestamp": str(int(now.timestamp()))}
    hook.verify("{}", {**headers, "webhook-signature": hook.sign("m1", now, "{}")})
    spec = importlib.util.find_spec("whisper")
    assert spec is not None and spec.submodule_search_locations, "whisper is not importable"
    assets = Path(next(iter(spec.submodule_search_locations))) / "assets"
    missing = [a for a in WHISPER_ASSETS if not (assets / a).is_file()]
    assert not missing, f"whisper assets missing: {missing}"
    if importlib.util.find_spec("torch") is not None:
        import whisper.tokenizer

        whisper.tokenizer.get_tokenizer(multilingual=False).encode("hello")  # reads gpt2.tiktoken, offline
        whisper_note = "imported, tokenizer loads"
    else:
        whisper_note = "files and assets present (no torch here: not imported)"
    packages = ", ".join(f"{p} {_installed(p)}" for p in ("boto3", "moto", "pydantic", "werkzeug", "flask"))
    print(f"bundle check: ok on Python {sys.version.split()[0]}: moto S3 + SQS round trip in {moto_seconds:.1f} s")
    print(f"bundle check: whisper {whisper_note}; {packages}; boto3 from {Path(boto3.__file__).parent.parent}")


def _installed(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def check_site(site_tar: Path, work: Path, python: Path) -> None:
    """Unpack the tarball and run ``check`` with a bare CPython 3.12 venv, host packages standing in beside it."""
    download(HOST, work / "wheels")
    host = work / "host"
    install(HOST, work / "wheels", host)
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-check-") as tmp:
        venv, site = Path(tmp) / "venv", Path(tmp) / "site"
        subprocess.run([str(python), "-m", "venv", "--without-pip", str(venv)], check=True)
        extract(site_tar, site)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WHISPER_", "PYTHON"))}
        env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT), str(host)]), PYTHONDONTWRITEBYTECODE="1")
        subprocess.run([str(venv / "bin" / "python"), "-m", "bench.gpu_bundle", "check"], cwd=ROOT, env=env, check=True)


# ---------------------------------------------------------------------------------------------- main


def build(*, check_python: Path | None) -> int:
    started = time.monotonic()
    shutil.rmtree(GPU_DIR, ignore_errors=True)
    GPU_DIR.mkdir()
    parts = {
        "site.tar.xz": build_site(WORK_DIR, GPU_DIR / "site.tar.xz"),
        "tiny.en.npz": build_weights(GPU_DIR / "tiny.en.npz"),
        "corpus.tar.xz": build_corpus(WORK_DIR, GPU_DIR / "corpus.tar.xz"),
    }
    carried = {p: version(p) for p in CARRIED}
    (GPU_DIR / "bundle.json").write_text(json.dumps({"python": "3.12", "packages": carried}, indent=2) + "\n")
    if check_python is not None:
        check_site(parts["site.tar.xz"], WORK_DIR, check_python)
    else:
        log("not checking the site tarball: no CPython 3.12 here (pass --check-python)")
    repo = repo_bytes()
    gpu = sum(f.stat().st_size for f in GPU_DIR.rglob("*") if f.is_file())
    print()
    for name, path in parts.items():
        print(f"  .gpu/{name:<16} {mib(path.stat().st_size):>10}")
    print(f"  {'repo files':<21} {mib(repo):>10}")
    took = time.monotonic() - started
    print(f"  {'total':<21} {mib(repo + gpu):>10}  (limit {BUDGET_MIB:.0f} MiB; built in {took:.0f} s)")
    if repo + gpu > BUDGET_MIB * 2**20:
        print(f"gpu-bundle: too big: {mib(repo + gpu)} > {BUDGET_MIB:.0f} MiB", file=sys.stderr)
        return 1
    print("\nsend the working tree with the ignored path '.gpu' carried, then run there: bash bench/gpu.sh")
    return 0


def _default_check_python() -> Path | None:
    """A CPython like the GPU machine's, from PATH (``--check-python`` names another)."""
    found = shutil.which("python3.12")
    return Path(found) if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_bundle", description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("build", help="build .gpu/ (the default)")
    sub.add_parser("check", help="check the carried packages in this interpreter")
    ext = sub.add_parser("extract", help="unpack an .tar.xz (no xz binary needed)")
    ext.add_argument("archive", type=Path)
    ext.add_argument("dest", type=Path)
    parser.add_argument("--check-python", type=Path, help="CPython 3.12 for checking the site tarball")
    parser.add_argument("--no-check", action="store_true", help="skip the CPython 3.12 check of the site tarball")
    args = parser.parse_args(argv)
    if args.command == "check":
        check()
        return 0
    if args.command == "extract":
        extract(args.archive, args.dest)
        return 0
    return build(check_python=None if args.no_check else (args.check_python or _default_check_python()))


if __name__ == "__main__":
    sys.exit(main())
