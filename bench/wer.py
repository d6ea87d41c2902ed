"""Word error rate the way Whisper's papers report it: both sides through Whisper's English normaliser first."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any


@cache
def _normaliser() -> Any:
    # whisper.normalizers imports whisper (and so torch): loaded on first use, not at import.
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalise(text: str) -> str:
    return " ".join(_normaliser()(text).split())


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float | None:
    """Errors over all reference words (not a mean of per-file rates); None when nothing can be scored.

    Pairs whose reference normalises to nothing are left out: jiwer cannot score an empty reference.
    """
    import jiwer

    pairs = [(normalise(r), normalise(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return None
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))
