"""Multi-speaker recordings with human references, for ``bench.diarization``: who spoke when (RTTM) and what each
speaker said (an STM file, or one text file per speaker).

A recordings directory holds, for each ``NAME.wav`` / ``.flac`` / ...:

* ``NAME.rttm``: the reference turns (``SPEAKER file 1 start duration <NA> <NA> speaker <NA> <NA>``); the file-id
  column is not checked (pyannote's AMI sample calls it ``mixture``);
* and either ``NAME.stm`` (``file channel speaker start end text``: utterances with times, so the text can be put in
  time order) or ``NAME.spk*.txt``, one file per speaker (``NAME.spkA.txt``...: no times; their letters need not
  match the RTTM's names, since cpWER is free over the speaker mapping). Without either, only DER is scored.

Standard library and numpy only: the tests read and write these files without the scoring packages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.corpus import audio_seconds
from worker.diarization.turns import Turn

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4"})
# STM speaker names that mark regions left out of scoring rather than a person (NIST sclite conventions).
STM_IGNORED = frozenset({"inter_segment_gap", "excluded_region"})


class ReferenceError(ValueError):
    """A reference file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Utterance:
    speaker: str
    text: str
    start: float | None = None  # None: the reference gives no times (per-speaker text files)
    end: float | None = None


@dataclass
class Recording:
    """One multi-speaker recording: a file, or an assembled conversation held in memory (``samples``)."""

    name: str
    seconds: float
    turns: list[Turn]  # the reference, in time order
    utterances: list[Utterance] = field(default_factory=list)
    audio: Path | None = None
    samples: np.ndarray | None = field(default=None, repr=False)  # 16 kHz float32
    kind: str = "recording"  # "recording" | "conversation"
    sources: list[str] = field(default_factory=list)  # the clips a conversation is made of, in turn order

    @property
    def speakers(self) -> int:
        return len({turn.speaker for turn in self.turns})

    def speaker_texts(self) -> dict[str, str]:
        """Each speaker's words, utterances in the order given (time order where there are times)."""
        texts: dict[str, list[str]] = {}
        for utterance in self.utterances:
            texts.setdefault(utterance.speaker, []).append(utterance.text)
        return {speaker: " ".join(parts) for speaker, parts in texts.items()}

    def ordered_text(self) -> str | None:
        """Everyone's words in time order; None when the reference has no times to order them by."""
        if not self.utterances or any(u.start is None for u in self.utterances):
            return None
        return " ".join(u.text for u in sorted(self.utterances, key=lambda u: u.start or 0.0))


# ---------------------------------------------------------------------------------------------- RTTM / STM


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    return [
        (number, line.split())
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith((";;", "#"))
    ]


def parse_rttm(path: Path) -> list[Turn]:
    """``SPEAKER`` lines as turns in time order; other record types (SPKR-INFO, LEXEME...) are skipped."""
    turns = []
    for number, fields in _lines(path):
        if fields[0] != "SPEAKER":
            continue
        try:
            start, duration, speaker = float(fields[3]), float(fields[4]), fields[7]
        except (IndexError, ValueError) as exc:
            raise ReferenceError(f"{path}:{number}: not an RTTM SPEAKER line: {' '.join(fields)}") from exc
        if duration > 0:
            turns.append(Turn(start, round(start + duration, 6), speaker))  # 2.59 + 0.36 is 2.95, not 2.9499…
    return sorted(turns, key=lambda t: (t.start, t.end, t.speaker))


def parse_stm(path: Path) -> list[Utterance]:
    """``file channel speaker start end [<label>] text`` lines as utterances in time order."""
    utterances = []
    for number, fields in _lines(path):
        try:
            speaker, start, end = fields[2], float(fields[3]), float(fields[4])
        except (IndexError, ValueError) as exc:
            raise ReferenceError(f"{path}:{number}: not an STM line: {' '.join(fields)}") from exc
        words = fields[5:]
        if words and words[0].startswith("<") and words[0].endswith(">"):  # optional <o,f0,male> label
            words = words[1:]
        text = " ".join(words)
        if speaker in STM_IGNORED or text == "ignore_time_segment_in_scoring":
            continue
        utterances.append(Utterance(speaker, text, start, end))
    return sorted(utterances, key=lambda u: (u.start or 0.0, u.end or 0.0))


def write_rttm(path: Path, name: str, turns: list[Turn]) -> None:
    lines = [f"SPEAKER {name} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>" for t in turns]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_stm(path: Path, name: str, utterances: list[Utterance]) -> None:
    lines = [f"{name} 1 {u.speaker} {u.start or 0.0:.3f} {u.end or 0.0:.3f} {u.text}" for u in utterances]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- directory


def speaker_files(audio: Path) -> dict[str, Path]:
    """``NAME.spkX.txt`` beside ``NAME.ext``, keyed by ``X``."""
    pattern = re.compile(re.escape(audio.stem) + r"\.spk(.+)\.txt")
    found = {}
    for path in sorted(audio.parent.iterdir()):
        match = pattern.fullmatch(path.name)
        if match:
            found[match.group(1)] = path
    return found


def read_utterances(audio: Path) -> list[Utterance]:
    """The speaker-attributed text reference of ``audio``: its STM, else its per-speaker files, else none."""
    stm = audio.with_suffix(".stm")
    if stm.is_file():
        return parse_stm(stm)
    return [
        Utterance(speaker, " ".join(path.read_text(encoding="utf-8").split()))
        for speaker, path in speaker_files(audio).items()
    ]


def read_recordings(root: Path) -> list[Recording]:
    """Every top-level audio file in ``root`` with a same-named ``.rttm``, in name order."""
    if not root.is_dir():
        raise ReferenceError(f"{root} is not a directory")
    recordings = []
    for audio in sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES):
        rttm = audio.with_suffix(".rttm")
        if not rttm.is_file():
            continue
        recordings.append(
            Recording(
                name=audio.stem,
                seconds=round(audio_seconds(audio), 3),
                turns=parse_rttm(rttm),
                utterances=read_utterances(audio),
                audio=audio,
            )
        )
    if not recordings:
        raise ReferenceError(f"{root} holds no audio file with a same-named .rttm beside it")
    return recordings
