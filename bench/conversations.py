"""Conversations assembled from single-speaker clips (``bench.diarization --clips DIR``), so that the reference
turns and each speaker's words are known exactly.

A clips directory holds top-level audio files, each with a same-named ``.txt`` reference, and a ``MANIFEST.tsv``
whose ``file`` and ``speaker`` columns say who speaks in each (the real-speech dev set's manifest). Rows whose speaker
is not given ("speaker id not given", "unknown", empty) are left out: two such clips may be one voice. Without a
manifest, the speaker is the file name less its last ``_``/``-`` field (``vctk_p225_003`` -> ``vctk_p225``), which
splits a LibriSpeech speaker by chapter: give a manifest where that matters. Subfolders are not read.

Conversation ``i`` has 2, 3 or 4 speakers in turn (fewer when the clips have fewer voices), drawn at random from
the speakers with two clips or more (from all when too few have: a speaker with one clip can speak only once);
everyone speaks once, in random order, then a random other speaker takes each next turn, ``2k``-``3k`` turns in all
for ``k`` speakers, no clip twice, ending early when only the last speaker has clips left. Every clip is cut to its
speech (an energy threshold, not a VAD, so the reference does not lean on the diarizer's own detector) and turns are
separated by 0.2-1.0 s of digital silence. Times fall on whole milliseconds, so an RTTM written to 1 ms is exact.
``random.Random(seed)`` makes every choice: the same clips and seed give the same conversations, sample for sample.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.references import AUDIO_SUFFIXES, Recording, Utterance, write_rttm, write_stm
from worker.audio import SAMPLE_RATE
from worker.audio.wav import write_wav
from worker.diarization.turns import Turn

MANIFEST_TSV = "MANIFEST.tsv"
SPEAKER_COUNTS = (2, 3, 4)  # conversation i has SPEAKER_COUNTS[i % 3] speakers
TURNS_PER_SPEAKER = (2, 3)
GAP_SECONDS = (0.2, 1.0)
TRIM_FRAME = 320  # 20 ms energy frames
TRIM_DB = -40.0  # below the loudest frame: silence (the dev clips' noise floors sit at -45 dB and lower)
TRIM_PAD = 800  # 50 ms kept either side of the speech
MS = SAMPLE_RATE // 1000  # samples per millisecond: every cut falls on a whole one
_UNKNOWN = re.compile(r"not given|unknown|\d+\s+speakers", re.IGNORECASE)


class ClipsError(ValueError):
    """The clips cannot make a conversation; the message says why."""


@dataclass(frozen=True)
class Clip:
    name: str
    audio: Path
    text: str
    speaker: str


@dataclass(frozen=True)
class Plan:
    """One conversation before any audio is read: its clips in turn order and the silences between them (ms)."""

    name: str
    clips: tuple[Clip, ...]
    gaps_ms: tuple[int, ...]  # one fewer than clips


# ---------------------------------------------------------------------------------------------- clips


def speaker_id(label: str) -> str:
    """A manifest's speaker text as one RTTM-safe token: ``VCTK p225`` -> ``VCTK_p225``."""
    return re.sub(r"\s+", "_", re.sub(r"\s*\(.*\)\s*$", "", label).strip())


def speaker_from_name(stem: str) -> str:
    """The fallback without a manifest: the name less its last ``_``/``-`` field."""
    return re.sub(r"[_-][^_-]*$", "", stem) or stem


def manifest_speakers(root: Path) -> dict[str, str] | None:
    """File name -> speaker label from ``root/MANIFEST.tsv``; None when there is no manifest."""
    path = root / MANIFEST_TSV
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if rows and not {"file", "speaker"} <= set(rows[0]):
        raise ClipsError(f"{path} has no 'file' and 'speaker' columns")
    return {row["file"]: (row["speaker"] or "").strip() for row in rows if row.get("file")}


def read_clips(root: Path) -> list[Clip]:
    """Top-level audio files with a ``.txt`` reference and a known speaker, in name order."""
    if not root.is_dir():
        raise ClipsError(f"{root} is not a directory")
    manifest = manifest_speakers(root)
    clips = []
    for audio in sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES):
        reference = audio.with_suffix(".txt")
        if not reference.is_file():
            continue
        label = speaker_from_name(audio.stem) if manifest is None else manifest.get(audio.name, "")
        if not label or _UNKNOWN.search(label):
            continue
        text = " ".join(reference.read_text(encoding="utf-8").split())
        clips.append(Clip(audio.stem, audio, text, speaker_id(label)))
    return clips


# ---------------------------------------------------------------------------------------------- plan


def _by_speaker(clips: list[Clip]) -> dict[str, list[Clip]]:
    grouped: dict[str, list[Clip]] = {}
    for clip in sorted(clips, key=lambda c: c.name):
        grouped.setdefault(clip.speaker, []).append(clip)
    return dict(sorted(grouped.items()))


def _turns(rng: random.Random, pools: dict[str, list[Clip]], wanted: int) -> list[Clip]:
    order = rng.sample(sorted(pools), len(pools))  # everyone speaks once first
    sequence = [pools[speaker].pop() for speaker in order]
    last = order[-1]
    while len(sequence) < wanted:
        others = [speaker for speaker in sorted(pools) if speaker != last and pools[speaker]]
        if not others:  # only the last speaker has clips left: a turn of theirs would not alternate
            break
        last = rng.choice(others)
        sequence.append(pools[last].pop())
    return sequence


def plan(clips: list[Clip], count: int, seed: int) -> list[Plan]:
    """``count`` conversations' clips and gaps, every choice from ``random.Random(seed)``."""
    grouped = _by_speaker(clips)
    if len(grouped) < 2:
        raise ClipsError(f"conversations need clips of at least two speakers; found {len(grouped)}")
    rng = random.Random(seed)
    plans = []
    for index in range(count):
        k = min(SPEAKER_COUNTS[index % len(SPEAKER_COUNTS)], len(grouped))
        several = [s for s in grouped if len(grouped[s]) >= TURNS_PER_SPEAKER[0]]
        speakers = rng.sample(several if len(several) >= k else sorted(grouped), k)
        pools = {s: rng.sample(grouped[s], len(grouped[s])) for s in speakers}  # shuffled copies
        chosen = _turns(rng, pools, rng.randint(TURNS_PER_SPEAKER[0] * k, TURNS_PER_SPEAKER[1] * k))
        gaps = tuple(round(rng.uniform(*GAP_SECONDS) * 1000) for _ in chosen[1:])
        plans.append(Plan(f"conv{index + 1:02d}-{k}spk", tuple(chosen), gaps))
    return plans


# ---------------------------------------------------------------------------------------------- audio


def trim(samples: np.ndarray) -> np.ndarray:
    """The clip from its first to its last frame within ``TRIM_DB`` of its loudest, padded, cut to whole ms."""
    frames = len(samples) // TRIM_FRAME
    if frames == 0:
        return samples[: len(samples) // MS * MS]
    power = (samples[: frames * TRIM_FRAME].astype(np.float64).reshape(frames, TRIM_FRAME) ** 2).mean(axis=1)
    loud = np.nonzero(power >= power.max() * 10 ** (TRIM_DB / 10))[0]
    first = max(int(loud[0]) * TRIM_FRAME - TRIM_PAD, 0)
    last = min((int(loud[-1]) + 1) * TRIM_FRAME + TRIM_PAD, len(samples))
    last = first + (last - first) // MS * MS
    return samples[first:last]


def _decode(path: Path) -> np.ndarray:
    from worker.audio.decode import decode_audio

    return decode_audio(path, max_seconds=600)


def build(plan_: Plan, load: Callable[[Path], np.ndarray]) -> Recording:
    """The conversation's samples, reference turns and utterances (one per clip, with its exact times)."""
    pieces: list[np.ndarray] = []
    turns: list[Turn] = []
    utterances: list[Utterance] = []
    position = 0  # samples
    for index, clip in enumerate(plan_.clips):
        if index:
            gap = plan_.gaps_ms[index - 1] * MS
            pieces.append(np.zeros(gap, dtype=np.float32))
            position += gap
        speech = trim(np.asarray(load(clip.audio), dtype=np.float32))
        start, end = position / SAMPLE_RATE, (position + len(speech)) / SAMPLE_RATE
        pieces.append(speech)
        position += len(speech)
        turns.append(Turn(start, end, clip.speaker))
        utterances.append(Utterance(clip.speaker, clip.text, start, end))
    return Recording(
        name=plan_.name,
        seconds=position / SAMPLE_RATE,
        turns=turns,
        utterances=utterances,
        samples=np.concatenate(pieces),
        kind="conversation",
        sources=[clip.name for clip in plan_.clips],
    )


def assemble(
    clips: list[Clip], count: int, seed: int, load: Callable[[Path], np.ndarray] | None = None
) -> list[Recording]:
    """``count`` conversations from ``clips``; each clip is decoded once (16 kHz mono float32)."""
    cache: dict[Path, np.ndarray] = {}
    decode = load or _decode

    def cached(path: Path) -> np.ndarray:
        if path not in cache:
            cache[path] = decode(path)
        return cache[path]

    return [build(p, cached) for p in plan(clips, count, seed)]


def write_recording(recording: Recording, directory: Path) -> Path:
    """``NAME.wav`` + ``.rttm`` + ``.stm`` in ``directory``: readable again with ``--recordings``."""
    if recording.samples is None:
        raise ValueError(f"{recording.name} has no samples in memory")
    audio = write_wav(directory / f"{recording.name}.wav", recording.samples)
    write_rttm(audio.with_suffix(".rttm"), recording.name, recording.turns)
    write_stm(audio.with_suffix(".stm"), recording.name, recording.utterances)
    return audio
