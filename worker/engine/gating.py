"""Voice activity gating shared by the engines: where to decode, and transcripts put back on the recording's timeline.

The batched engine cuts its pieces from the speech regions directly (they keep the recording's offsets); the
reference engine decodes the regions joined end to end, as faster-whisper does, and ``on_timeline`` maps its
segments and words back.
"""

from __future__ import annotations

import zlib

import numpy as np

from worker.audio import SAMPLE_RATE
from worker.audio.speech import Speech, Timeline, VadOptions, voice_activity
from worker.contract import Vad
from worker.engine.options import TranscribeOptions
from worker.transcript import Segment, Transcript, Word


def vad_options(requested: bool | Vad) -> VadOptions | None:
    """The contract's ``vad`` (true, false or tunables) as the engines take it."""
    if requested is False:
        return None
    if requested is True:
        return VadOptions()
    return VadOptions(requested.threshold, requested.min_speech_ms, requested.min_silence_ms, requested.speech_pad_ms)


def speech_of(audio: np.ndarray, options: TranscribeOptions) -> Speech | None:
    """Where ``audio`` speaks, or None when the options turn detection off."""
    if options.vad is None:
        return None
    return voice_activity().speech(audio, options.vad)


def speech_of_each(audios: list[np.ndarray], options: TranscribeOptions) -> list[Speech | None]:
    """``speech_of`` for several recordings, swept together."""
    if options.vad is None:
        return [None] * len(audios)
    return list(voice_activity().speech_many(audios, options.vad))


def silent_transcript(audio: np.ndarray, options: TranscribeOptions, speech: Speech) -> Transcript:
    """The transcript of a recording without speech: no segments; the language asked for, else English."""
    return Transcript(
        text="",
        language=options.language or "en",
        duration=round(audio.size / SAMPLE_RATE, 3),
        segments=[],
        task=options.task,
        speech_seconds=speech.seconds,
    )


def on_timeline(transcript: Transcript, speech: Speech, duration: float) -> Transcript:
    """``transcript`` of the regions joined end to end, its times mapped onto the recording."""
    timeline = Timeline(speech.regions)
    segments = []
    for seg in transcript.segments:
        words = None
        if seg.words is not None:
            words = [
                Word(
                    w.word,
                    timeline.original(w.start),
                    timeline.original(w.end, is_end=True),
                    w.probability,
                    w.speaker,
                )
                for w in seg.words
            ]
        start = timeline.original(seg.start)
        segments.append(
            Segment(
                id=seg.id,
                start=start,
                end=max(start, timeline.original(seg.end, is_end=True)),
                text=seg.text,
                avg_logprob=seg.avg_logprob,
                no_speech_prob=seg.no_speech_prob,
                compression_ratio=seg.compression_ratio,
                temperature=seg.temperature,
                words=words,
                speaker=seg.speaker,
            )
        )
    return Transcript(
        text=transcript.text,
        language=transcript.language,
        duration=duration,
        segments=segments,
        task=transcript.task,
        speakers=transcript.speakers,
        speech_seconds=speech.seconds,
    )


def seed_of(samples: np.ndarray, *salt: int) -> int:
    """A sampling seed drawn from the audio itself (and ``salt``), so the same input samples the same fallbacks
    whichever job or run brings it. At most about a million samples are read: an hour costs no more than a clip."""
    flat = samples.reshape(-1)
    step = max(1, flat.size // 1_000_000)
    seed = zlib.crc32(np.ascontiguousarray(flat[::step]).tobytes())
    for value in (samples.size, *salt):
        seed = zlib.crc32(int(value).to_bytes(8, "little", signed=True), seed)
    return seed
