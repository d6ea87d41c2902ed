"""The benchmark corpus: audio files with reference transcripts, listed in ``manifest.json``.

The default corpus is synthesised here with espeak-ng from the public-domain text in ``bench.texts``: about forty
short clips in varied voices, speeds and pitches, one long recording of about five minutes with pauses between
sentences, and the bundled JFK sample. It is deterministic and cached: the manifest records a fingerprint of
everything that went into it, and a matching corpus is reused rather than rebuilt.

A user corpus is a directory of audio files, each with a same-named ``.txt`` reference beside it (``talk.mp3`` +
``talk.txt``); a file longer than 60 s counts as "long". Only the directory's own files count, not its subfolders':
a dataset keeps other material there (the real-speech dev set's ``diarization/`` holds multi-speaker recordings
whose ``.txt`` is not in time order). A directory that holds a ``manifest.json`` is read as is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench import texts
from worker.audio import SAMPLE_RATE
from worker.audio.wav import write_wav

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".cache" / "bench-corpus"
JOINED_DIR = ROOT / ".cache" / "bench-joined"
# The development clips beside the repository (DESIGN.md, "Test audio"); WHISPER_DEV_AUDIO names another folder.
DEV_CORPUS = Path(os.environ.get("WHISPER_DEV_AUDIO") or ROOT.parent / "shared" / "audio" / "dev")
MANIFEST = "manifest.json"
LONG_SECONDS = 60.0  # a user file longer than this is "long"
# Beside a user corpus's audio: references and annotations, never audio even when a same-named .txt exists.
NOT_AUDIO = frozenset({".txt", ".rttm", ".stm", ".uem", ".tsv", ".csv", ".json", ".md"})
CORPUS_VERSION = 1
INSTALL_HINT = "espeak-ng is not installed: install it with `sudo apt-get install espeak-ng`, or pass --corpus DIR"

# Rotated over the clips: espeak-ng's English voices with a few of its variants (``espeak-ng --voices=variant``).
# en-gb-scotland is left out: tiny.en got most of its words wrong (about 60% WER against 15% for en-us).
VOICES = (
    "en-us",
    "en-gb",
    "en-us+m3",
    "en+f2",
    "en-gb-x-rp",
    "en-us+f4",
    "en-gb-x-rp+m7",
    "en-029+m2",
    "en-us-nyc",
    "en-gb+f3",
    "en-us+m7",
)
SPEEDS = (140, 165, 190, 155, 175, 150, 185, 160)  # words per minute
PITCHES = (50, 35, 65, 45, 70, 40, 55)
LONG_VOICE, LONG_SPEED, LONG_PITCH = "en-us", 125, 45
PAUSES = (0.8, 1.2, 1.6, 0.9, 1.4)  # seconds between sentences of the long recording, in turn
PARAGRAPH_PAUSE = 2.5


@dataclass(frozen=True)
class Item:
    name: str
    audio: Path
    text: str
    seconds: float
    kind: str  # "clip" | "long"


@dataclass(frozen=True)
class Corpus:
    root: Path
    items: tuple[Item, ...]

    @property
    def seconds(self) -> float:
        return sum(item.seconds for item in self.items)

    def describe(self) -> str:
        clips = sum(1 for item in self.items if item.kind == "clip")
        return f"{self.root} ({clips} clips, {len(self.items) - clips} long; {self.seconds:.1f} s of audio)"


class CorpusError(RuntimeError):
    """The corpus cannot be built or read; the message says what to do."""


# ---------------------------------------------------------------------------------------------- manifest


def write_manifest(root: Path, items: list[Item], fingerprint: str = "") -> Path:
    entries = []
    for item in items:
        entry = asdict(item)
        entry["audio"] = item.audio.relative_to(root).as_posix() if item.audio.is_relative_to(root) else str(item.audio)
        entries.append(entry)
    path = root / MANIFEST
    body = {"version": CORPUS_VERSION, "fingerprint": fingerprint, "items": entries}
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def read_manifest(root: Path) -> tuple[Corpus, str]:
    """The corpus a manifest lists (audio paths relative to its directory) and its fingerprint."""
    try:
        body = json.loads((root / MANIFEST).read_text())
        items = tuple(
            Item(e["name"], root / e["audio"], e["text"], float(e["seconds"]), e["kind"]) for e in body["items"]
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorpusError(f"cannot read {root / MANIFEST}: {exc}") from exc
    return Corpus(root, items), str(body.get("fingerprint", ""))


# ---------------------------------------------------------------------------------------------- user corpus


def audio_seconds(path: Path) -> float:
    """Length of an audio file: the WAV header when it is a plain WAV, else the decoded length."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getnframes() > 0:
                return wav.getnframes() / wav.getframerate()
    except (wave.Error, EOFError, OSError):
        pass
    from worker.audio.decode import decode_audio

    return decode_audio(path, max_seconds=24 * 3600).size / SAMPLE_RATE


def from_directory(root: Path) -> Corpus:
    """A user corpus: every top-level file with a same-named ``.txt`` beside it, or the directory's manifest."""
    root = root.resolve()
    if not root.is_dir():
        raise CorpusError(f"{root} is not a directory")
    if (root / MANIFEST).is_file():
        return read_manifest(root)[0]
    items = []
    for path in sorted(p for p in root.iterdir() if p.is_file()):  # not rglob: subfolders hold other data
        reference = path.with_suffix(".txt")
        if path.suffix.lower() in NOT_AUDIO or path.name.startswith(".") or not reference.is_file():
            continue
        seconds = audio_seconds(path)
        name = path.stem
        kind = "long" if seconds > LONG_SECONDS else "clip"
        items.append(Item(name, path, reference.read_text().strip(), round(seconds, 3), kind))
    if not items:
        raise CorpusError(f"{root} holds no audio file with a same-named .txt reference beside it")
    return Corpus(root, tuple(items))


def joined(corpus: Corpus, cache: Path = JOINED_DIR) -> Corpus:
    """The corpus's items in order as one long recording, a pause between each two, its reference theirs in order:
    a real recording at length whose every word is known, where a dataset has only short clips. The recording is
    written once per corpus (its names, lengths and references fix it) and reused."""
    key = hashlib.sha256(json.dumps([(i.name, i.seconds, i.text) for i in corpus.items]).encode()).hexdigest()[:16]
    path = cache / f"joined-{key}.wav"
    if not path.is_file():
        from worker.audio.decode import decode_audio

        pieces: list[np.ndarray] = []
        for n, item in enumerate(corpus.items):
            if n:
                pieces.append(np.zeros(int(PAUSES[n % len(PAUSES)] * SAMPLE_RATE), dtype=np.float32))
            pieces.append(decode_audio(item.audio, max_seconds=24 * 3600))
        write_wav(path.with_suffix(".part"), np.concatenate(pieces)).replace(path)
    name = f"{corpus.root.name}-joined"
    text = " ".join(item.text for item in corpus.items)
    item = Item(name, path, text, round(audio_seconds(path), 3), "long")
    return Corpus(corpus.root, (item,))


# ---------------------------------------------------------------------------------------------- synthesis


def espeak_version() -> str:
    if shutil.which("espeak-ng") is None:
        raise CorpusError(INSTALL_HINT)
    return subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout.strip()


def _resample(pcm: np.ndarray, rate: int) -> np.ndarray:
    """int16 mono at ``rate`` to int16 at 16 kHz with FFmpeg's swresample (deterministic)."""
    if rate == SAMPLE_RATE:
        return pcm
    import av

    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), "s16", "mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16)


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """``text`` spoken by espeak-ng, as int16 samples at 16 kHz."""
    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        out = Path(tmp) / "speech.wav"
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), "--", text]
        try:
            subprocess.run(cmd, check=True, capture_output=True)
        except FileNotFoundError as exc:
            raise CorpusError(INSTALL_HINT) from exc
        with wave.open(str(out), "rb") as wav:
            rate = wav.getframerate()
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return _resample(pcm, rate)


def _saved_seconds(path: Path, pcm: np.ndarray) -> float:
    """Write the clip (the decoder's fast path) and return its length in seconds."""
    write_wav(path, pcm)
    return round(len(pcm) / SAMPLE_RATE, 3)


def sentences(paragraph: str) -> list[str]:
    """Split on sentence ends; a colon ending a salutation counts as one."""
    parts: list[str] = []
    current = ""
    for word in paragraph.split():
        current = f"{current} {word}".strip()
        if word.endswith((".", "?", "!", ":")):
            parts.append(current)
            current = ""
    if current:
        parts.append(current)
    return parts


def clip_plan() -> list[tuple[str, str, str, int, int]]:
    """(name, text, voice, speed, pitch) for every clip, chosen by position so the corpus is deterministic."""
    plan = []
    for i, (source, text) in enumerate(texts.CLIPS):
        voice, speed, pitch = VOICES[i % len(VOICES)], SPEEDS[i % len(SPEEDS)], PITCHES[i % len(PITCHES)]
        plan.append((f"clip-{i + 1:02d}-{source}", text, voice, speed, pitch))
    return plan


def fingerprint(version: str) -> str:
    plan = {
        "corpus": CORPUS_VERSION,
        "espeak": version,
        "clips": clip_plan(),
        "long": [LONG_VOICE, LONG_SPEED, LONG_PITCH, PAUSES, PARAGRAPH_PAUSE, texts.LONG_PARAGRAPHS],
        "jfk": texts.JFK_TEXT,
    }
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]


def _long_recording() -> np.ndarray:
    pieces: list[np.ndarray] = []
    turn = 0
    for p, paragraph in enumerate(texts.LONG_PARAGRAPHS):
        if p:
            pieces.append(np.zeros(int(PARAGRAPH_PAUSE * SAMPLE_RATE), dtype=np.int16))
        for s, sentence in enumerate(sentences(paragraph)):
            if s:
                pieces.append(np.zeros(int(PAUSES[turn % len(PAUSES)] * SAMPLE_RATE), dtype=np.int16))
                turn += 1
            pieces.append(speak(sentence, LONG_VOICE, LONG_SPEED, LONG_PITCH))
    return np.concatenate(pieces)


def jfk_path() -> Path:
    # The lossless recording the tests use; the package's own sample is a small Opus copy for the demo and smoke.
    return ROOT / "tests" / "data" / "jfk.flac"


def build_default(root: Path = DEFAULT_DIR, *, log: Callable[[str], None] = print) -> Corpus:
    """The synthesised corpus in ``root``, built once and reused while its fingerprint matches."""
    version = espeak_version()
    wanted = fingerprint(version)
    if (root / MANIFEST).is_file():
        try:
            corpus, found = read_manifest(root)
            if found == wanted and all(item.audio.is_file() for item in corpus.items):
                return corpus
        except CorpusError:
            pass
    log(f"building the benchmark corpus in {root} with {version.split(' Data')[0]} ...")
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for name, text, voice, speed, pitch in clip_plan():
        path = root / "clips" / f"{name}.wav"
        items.append(Item(name, path, text, _saved_seconds(path, speak(text, voice, speed, pitch)), "clip"))
    jfk = root / "clips" / "jfk.flac"
    shutil.copyfile(jfk_path(), jfk)
    items.append(Item("jfk", jfk, texts.JFK_TEXT, round(audio_seconds(jfk), 3), "clip"))
    long_path = root / "long" / f"{texts.LONG_NAME}.wav"
    long_text = " ".join(texts.LONG_PARAGRAPHS)
    items.append(Item(texts.LONG_NAME, long_path, long_text, _saved_seconds(long_path, _long_recording()), "long"))
    write_manifest(root, items, wanted)
    corpus = Corpus(root, tuple(items))
    log(f"corpus ready: {corpus.describe()}")
    return corpus
