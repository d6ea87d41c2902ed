"""The test data's paths and the model the tests transcribe with."""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
JFK = DATA / "jfk.flac"
JFK_TEXT = (
    "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
)
TEST_MODEL = "tiny.en"
# The development speech corpus beside the repository (DESIGN.md, "Test audio"); WHISPER_DEV_AUDIO names another.
BESIDE_THE_REPOSITORY = Path(__file__).resolve().parents[3]
DEV_AUDIO = Path(os.environ.get("WHISPER_DEV_AUDIO") or BESIDE_THE_REPOSITORY / "shared" / "audio" / "dev")
