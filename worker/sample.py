"""The speech sample ``demo`` and ``smoke`` send when given no audio: 11 s of the 1961 inaugural address (public
domain), 28 KB of Opus. A leaf: standard library only.

It lives in the source tree (``worker/data/jfk.opus``), where the editable install of ``make install`` finds it,
and is left out of the wheel, so the backend client installs without audio; ``smoke --audio FILE --expect WORDS``
and ``demo FILE`` take any recording instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["SAMPLE_WORDS", "SampleMissing", "sample_audio"]

SAMPLE_WORDS: Final = "ask not what your country can do for you"
_SAMPLE: Final = Path(__file__).resolve().parent / "data" / "jfk.opus"


class SampleMissing(FileNotFoundError):
    """This install has no sample (a wheel, not the source tree)."""


def sample_audio() -> Path:
    if not _SAMPLE.is_file():
        raise SampleMissing(
            "the speech sample ships with the source tree (worker/data/jfk.opus), not with this install: "
            "pass a recording of your own (smoke: --audio FILE --expect 'words it says')"
        )
    return _SAMPLE
