"""Official Whisper checkpoints into the model directory: downloaded once, sha256 verified, renamed into place.

This is what ``whisper-worker models fetch`` runs at image build time, and what the engine falls back to at run
time only when ``WHISPER_MODEL_DOWNLOAD=true``. openai-whisper's own ``_download`` is not used because it reads
the whole file into memory to hash it (3 GB for large-v3), cannot be pointed at a mirror, and silently downloads
again when a file on disk does not match.

The expected sha256 is the one openai-whisper publishes in each checkpoint's URL; a mirror
(``WHISPER_MODEL_MIRROR``) serves the same ``<sha256>/<file>`` layout and is held to the same hash, so an
internal mirror or an S3 website cannot substitute other weights.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from worker.errors import FetchUnavailable, UnknownModel

OFFICIAL_BASE_URL = "https://openaipublic.azureedge.net/main/whisper/models"
_CHUNK = 1 << 20

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


@dataclass(frozen=True)
class Download:
    name: str
    url: str
    sha256: str
    filename: str


@dataclass(frozen=True)
class Fetched:
    path: Path
    status: str  # "downloaded" | "present"
    bytes: int


def official_models() -> dict[str, str]:
    """Official model name → checkpoint URL, as pinned openai-whisper publishes them."""
    import whisper

    return dict(whisper._MODELS)


def official(name: str, mirror: str | None = None) -> Download:
    """Where to get the official checkpoint ``name`` and the hash it must have."""
    models = official_models()
    if name not in models:
        raise UnknownModel(f"{name!r} is not an official Whisper model; official: {', '.join(models)}")
    url = models[name]
    sha256, filename = url.split("/")[-2:]
    if mirror:
        url = f"{mirror.rstrip('/')}/{sha256}/{filename}"
    return Download(name, url, sha256, filename)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    download: Download,
    model_dir: Path,
    *,
    timeout: float = 60.0,
    client: httpx.Client | None = None,
    progress: Progress | None = None,
) -> Fetched:
    """Make ``model_dir/<filename>`` hold the verified checkpoint; refuse (UnknownModel) a file with another hash.

    A file already there with the right hash is kept; one with the wrong hash (a partial copy, a corrupted disk)
    is replaced. The download goes to a temporary file beside the target and is renamed only once its hash
    matches, so a reader never sees a partial or unverified checkpoint.
    """
    target = model_dir / download.filename
    if target.is_file() and sha256_file(target) == download.sha256:
        return Fetched(target, "present", target.stat().st_size)
    model_dir.mkdir(parents=True, exist_ok=True)
    own_client = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=True)  # redirects are fine: the hash decides
    fd, name = tempfile.mkstemp(dir=model_dir, prefix=f".{download.filename}.", suffix=".part")
    tmp = Path(name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out, http.stream("GET", download.url) as response:
            if response.status_code != 200:
                status = response.status_code
                raise FetchUnavailable(f"cannot download {download.name}: {download.url} answered {status}")
            total = int(response.headers.get("content-length") or 0) or None
            for chunk in response.iter_bytes(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if progress:
                    progress(size, total)
        actual = digest.hexdigest()
        if actual != download.sha256:
            raise UnknownModel(
                f"refused {download.name} from {download.url}: sha256 {actual}, expected {download.sha256}"
            )
        os.replace(tmp, target)
        return Fetched(target, "downloaded", size)
    except httpx.HTTPError as exc:
        raise FetchUnavailable(f"cannot download {download.name} from {download.url}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
        if own_client:
            http.close()
