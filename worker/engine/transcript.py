"""``Transcript``'s old path, kept for callers: it lives in ``worker.transcript``, a leaf any layer imports."""

from worker.transcript import (
    Segment,
    Transcript,
    Word,
)

__all__ = [
    "Segment",
    "Transcript",
    "Word",
]
