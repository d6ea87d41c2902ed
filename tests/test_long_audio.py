"""Audio that takes longer than the visibility timeout is kept invisible by the heartbeat: processed once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.support.harness import Harness
from tests.support.samples import JFK, TEST_MODEL
from worker.audio.decode import decode_audio
from worker.audio.wav import write_wav
from worker.service.app import build_engine


def test_clip_longer_than_visibility_timeout_is_processed_exactly_once(harness: Harness, tmp_path: Path) -> None:
    speech = decode_audio(JFK, max_seconds=60)
    write_wav(tmp_path / "long.wav", np.concatenate([speech] * 4))  # 44 s: several times the 2 s timeout
    audio = harness.upload(tmp_path / "long.wav", "audio/long.wav")
    harness.send({"job_id": "long", "audio": audio, "model": TEST_MODEL, "callback_url": harness.receiver.url})

    settings = harness.settings.with_overrides(visibility_timeout=2, max_idle_seconds=4.0)
    # A second process's worth of model: two workers never share decoder state.
    stats = harness.run_workers_together(settings, [harness.engine, build_engine(settings)])

    assert sum(s.received for s in stats) == 1
    assert sum(s.completed for s in stats) == 1
    result = harness.result("long")
    assert result["status"] == "completed" and result["attempt"] == 1
    assert result["processing_seconds"] > 2  # it really outlived the visibility timeout
    assert 43 < result["duration_seconds"] < 45
    assert len(harness.receiver.wait_for(1, timeout=5)) == 1
    assert harness.queue_depth() == 0
