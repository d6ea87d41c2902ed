"""decode_audio against real files of every common format, encoded here with PyAV (no model, no network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.audio_factory import (
    JFK,
    encoder_for,
    load_jfk,
    resample,
    tone,
    write_audio,
    write_empty_audio_stream,
    write_video_only,
    write_video_with_audio,
)
from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio
from worker.audio.wav import write_wav
from worker.service.errors import AudioTooLong, UndecodableAudio

JFK_SECONDS = 11.0
MAX_LAG = 2_000  # samples at 16 kHz (125 ms): encoder delay / priming that a container may not trim


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return load_jfk()


@pytest.fixture(scope="module")
def jfk_at(jfk: np.ndarray):
    cache: dict[int, np.ndarray] = {}

    def at(rate: int) -> np.ndarray:
        if rate not in cache:
            cache[rate] = resample(jfk, SAMPLE_RATE, rate)
        return cache[rate]

    return at


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def aligned_correlation(reference: np.ndarray, decoded: np.ndarray, max_lag: int = MAX_LAG) -> tuple[float, int]:
    """Best normalised cross-correlation of ``decoded`` against ``reference`` over lags within ±max_lag."""
    a = reference.astype(np.float64)
    b = decoded.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(a.size + b.size)))
    full = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
    lags = np.arange(-max_lag, max_lag + 1)
    lag = int(lags[np.argmax(full[lags % n])])  # decoded[i + lag] ~ reference[i]
    if lag >= 0:
        x, y = a, b[lag:]
    else:
        x, y = a[-lag:], b
    m = min(x.size, y.size)
    x, y = x[:m], y[:m]
    return float(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y))), lag


# (id, file suffix, muxer, codec, rate, channels, must run: a missing encoder fails instead of skipping)
FORMATS = [
    ("wav-pcm_s16le", "wav", "wav", "pcm_s16le", 44_100, 2, True),
    ("flac", "flac", "flac", "flac", 48_000, 2, True),
    ("mp3", "mp3", "mp3", "mp3", 44_100, 2, True),
    ("ogg-opus", "ogg", "ogg", "opus", 48_000, 2, True),  # Opus only runs at 48 kHz
    ("ogg-vorbis", "ogg", "ogg", "vorbis", 44_100, 2, False),
    ("m4a-aac", "m4a", "ipod", "aac", 44_100, 2, True),  # "ipod" is FFmpeg's m4a muxer
    ("webm-opus", "webm", "webm", "opus", 48_000, 2, False),
]


def _need_encoder(codec: str, required: bool) -> None:
    if encoder_for(codec) is None:
        message = f"this PyAV build has no {codec} encoder"
        if required:
            pytest.fail(message)
        pytest.skip(message)


def _assert_like_jfk(decoded: np.ndarray, jfk: np.ndarray, *, min_corr: float) -> None:
    assert decoded.dtype == np.float32
    assert decoded.ndim == 1
    assert abs(decoded.size / SAMPLE_RATE - JFK_SECONDS) <= 0.1, decoded.size
    assert np.isfinite(decoded).all()
    assert np.abs(decoded).max() <= 1.0
    corr, lag = aligned_correlation(jfk, decoded)
    assert corr > min_corr, (corr, lag)
    # Same loudness: a stereo file with the signal on both channels must not come back louder (down-mix gain).
    assert rms(decoded) == pytest.approx(rms(jfk), rel=0.2)


@pytest.mark.parametrize(
    ("suffix", "muxer", "codec", "rate", "channels", "required"),
    [pytest.param(*rest, id=name) for name, *rest in FORMATS],
)
def test_decodes_format(
    tmp_path: Path, jfk: np.ndarray, jfk_at, suffix, muxer, codec, rate, channels, required
) -> None:
    _need_encoder(codec, required)
    path = write_audio(tmp_path / f"jfk.{suffix}", jfk_at(rate), rate, container=muxer, codec=codec, channels=channels)
    lossless = codec in ("pcm_s16le", "flac")
    _assert_like_jfk(decode_audio(path, max_seconds=60), jfk, min_corr=0.99 if lossless else 0.9)


def test_a_stream_that_changes_rate_and_layout_part_way_decodes_whole(tmp_path: Path, jfk: np.ndarray, jfk_at) -> None:
    # ADTS frames carry their own header, so two AAC captures joined byte for byte are one stream whose rate and
    # channel count change at the join (broadcast captures, concatenated uploads)
    _need_encoder("aac", True)
    first = write_audio(tmp_path / "a.aac", jfk_at(44_100), 44_100, container="adts", codec="aac", channels=1)
    second = write_audio(tmp_path / "b.aac", jfk_at(22_050), 22_050, container="adts", codec="aac", channels=2)
    joined = tmp_path / "joined.aac"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    decoded = decode_audio(joined, max_seconds=60)
    half = int(JFK_SECONDS * SAMPLE_RATE)
    assert abs(decoded.size - 2 * half) <= 2 * MAX_LAG
    for part in (decoded[:half], decoded[half:]):
        corr, lag = aligned_correlation(jfk, part)
        assert corr > 0.9, (corr, lag)
        assert rms(part) == pytest.approx(rms(jfk), rel=0.2)


def test_decodes_audio_track_of_mp4_video(tmp_path: Path, jfk: np.ndarray, jfk_at) -> None:
    _need_encoder("aac", True)
    path = write_video_with_audio(tmp_path / "clip.mp4", jfk_at(48_000), 48_000)
    _assert_like_jfk(decode_audio(path, max_seconds=60), jfk, min_corr=0.9)


def test_jfk_flac_as_shipped(jfk: np.ndarray) -> None:
    assert jfk.dtype == np.float32
    assert jfk.ndim == 1
    assert jfk.size == pytest.approx(JFK_SECONDS * SAMPLE_RATE, abs=0.1 * SAMPLE_RATE)
    assert 0.01 < rms(jfk) < 0.5
    assert np.abs(jfk).max() <= 1.0


def test_random_bytes_are_undecodable(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(np.random.default_rng(1234).bytes(64 * 1024))
    with pytest.raises(UndecodableAudio):
        decode_audio(path, max_seconds=60)


def test_text_file_is_undecodable(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("This is not audio.\n" * 200)
    with pytest.raises(UndecodableAudio):
        decode_audio(path, max_seconds=60)


def test_empty_file_is_undecodable(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(UndecodableAudio):
        decode_audio(path, max_seconds=60)


def test_truncated_header_is_undecodable(tmp_path: Path, jfk: np.ndarray) -> None:
    full = write_audio(tmp_path / "full.flac", jfk, SAMPLE_RATE, container="flac", codec="flac")
    path = tmp_path / "cut.flac"
    path.write_bytes(full.read_bytes()[:20])
    with pytest.raises(UndecodableAudio):
        decode_audio(path, max_seconds=60)


def test_video_without_audio_stream(tmp_path: Path) -> None:
    path = write_video_only(tmp_path / "silent-film.mp4")
    with pytest.raises(UndecodableAudio, match="no audio stream"):
        decode_audio(path, max_seconds=60)


def test_audio_stream_without_packets(tmp_path: Path) -> None:
    path = write_empty_audio_stream(tmp_path / "empty-stream.mkv")
    with pytest.raises(UndecodableAudio):
        decode_audio(path, max_seconds=60)


def test_too_long_is_refused() -> None:
    with pytest.raises(AudioTooLong):
        decode_audio(JFK, max_seconds=5)


def test_limit_just_above_length_passes() -> None:
    assert decode_audio(JFK, max_seconds=11.5).size == pytest.approx(JFK_SECONDS * SAMPLE_RATE, abs=1600)


def test_8khz_mono_is_resampled_to_16khz(tmp_path: Path) -> None:
    signal = tone(440.0, 3.0, 8_000)
    path = write_audio(tmp_path / "phone.wav", signal, 8_000, container="wav", codec="pcm_s16le")
    decoded = decode_audio(path, max_seconds=60)
    assert decoded.dtype == np.float32
    assert decoded.ndim == 1
    assert abs(decoded.size - 3 * SAMPLE_RATE) <= 160  # 10 ms
    # Still a 440 Hz tone at the new rate (a wrong rate would move the peak).
    spectrum = np.abs(np.fft.rfft(decoded))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / decoded.size
    assert peak_hz == pytest.approx(440.0, abs=2.0)
    assert rms(decoded) == pytest.approx(rms(signal), rel=0.05)


def test_six_channels_downmix_to_mono(tmp_path: Path, jfk: np.ndarray, jfk_at) -> None:
    speech = jfk_at(48_000)
    # 5.1 (FL FR FC LFE BL BR): speech in the centre, quiet copies in the fronts, silence elsewhere.
    channels = np.zeros((6, speech.size), dtype=np.float32)
    channels[2] = speech
    channels[0] = channels[1] = 0.3 * speech
    path = write_audio(tmp_path / "surround.wav", channels, 48_000, container="wav", codec="pcm_s16le", channels=6)
    decoded = decode_audio(path, max_seconds=60)
    assert decoded.dtype == np.float32
    assert decoded.ndim == 1
    assert abs(decoded.size / SAMPLE_RATE - JFK_SECONDS) <= 0.1
    corr, _ = aligned_correlation(jfk, decoded)
    assert corr > 0.99
    assert rms(decoded) > 0.3 * rms(jfk)


@pytest.mark.parametrize("channels", [2, 6])
def test_full_scale_multichannel_stays_within_unit_range(tmp_path: Path, channels: int) -> None:
    # The same full-scale tone on every channel: a float down-mix without normalisation would sum to >1.
    path = write_audio(
        tmp_path / f"loud{channels}.wav",
        tone(440.0, 1.0, 48_000, amplitude=0.99),
        48_000,
        container="wav",
        codec="pcm_s16le",
        channels=channels,
    )
    decoded = decode_audio(path, max_seconds=60)
    assert np.abs(decoded).max() <= 1.0
    assert np.abs(decoded).max() > 0.9


# --- 16 kHz mono s16 WAV: read without FFmpeg, same values as the PyAV path.


def _pyav_only(path: Path, max_seconds: float = 60) -> np.ndarray:
    from worker.audio.decode import _decode_with_pyav

    return _decode_with_pyav(path, int(max_seconds * SAMPLE_RATE), max_seconds)


def test_native_wav_equals_pyav_path(tmp_path: Path, jfk: np.ndarray) -> None:
    path = write_wav(tmp_path / "native.wav", jfk)
    fast = decode_audio(path, max_seconds=60)
    slow = _pyav_only(path)
    assert fast.dtype == slow.dtype == np.float32
    np.testing.assert_array_equal(fast, slow)


def test_native_wav_is_read_without_pyav(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "native.wav", tone(440.0, 1.0, SAMPLE_RATE))
    # A fresh interpreter where importing av fails: the fast path must not need it.
    code = (
        "import sys; sys.modules['av'] = None\n"
        "from pathlib import Path\n"
        "from worker.audio.decode import decode_audio\n"
        f"a = decode_audio(Path({str(path)!r}), max_seconds=60)\n"
        "assert a.size == 16000 and 'av' not in {m for m, v in sys.modules.items() if v is not None}, a.size\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)


def test_native_wav_too_long_is_refused(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "long.wav", tone(440.0, 3.0, SAMPLE_RATE))
    with pytest.raises(AudioTooLong):
        decode_audio(path, max_seconds=2)
    assert decode_audio(path, max_seconds=3).size == 3 * SAMPLE_RATE


def test_native_wav_with_wrong_length_in_header(tmp_path: Path) -> None:
    # Streamed WAVs often carry a data size that is too large; the samples actually there are what counts.
    path = write_wav(tmp_path / "streamed.wav", tone(440.0, 1.0, SAMPLE_RATE))
    data = bytearray(path.read_bytes())
    assert data[36:40] == b"data"
    data[40:44] = (0x7FFFFFF0).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    decoded = decode_audio(path, max_seconds=60)
    assert decoded.size == SAMPLE_RATE
    with pytest.raises(AudioTooLong):
        decode_audio(path, max_seconds=0.5)


def test_other_wavs_still_go_through_pyav(tmp_path: Path, jfk: np.ndarray) -> None:
    stereo = write_audio(tmp_path / "stereo.wav", jfk, SAMPLE_RATE, container="wav", codec="pcm_s16le", channels=2)
    decoded = decode_audio(stereo, max_seconds=60)
    np.testing.assert_array_equal(decoded, _pyav_only(stereo))
    assert rms(decoded) == pytest.approx(rms(jfk), rel=0.05)  # down-mixed, not doubled


def test_header_only_wav_is_undecodable(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "header-only.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(UndecodableAudio):
        decode_audio(path, max_seconds=60)


def test_16khz_mono_flac_is_read_as_is(tmp_path: Path, jfk: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    import av

    def no_resampling(*args: object, **kwargs: object) -> None:
        raise AssertionError("a stream already at 16 kHz mono s16 needs no resampler")

    path = write_audio(tmp_path / "clip.flac", jfk, SAMPLE_RATE, container="flac", codec="flac")
    monkeypatch.setattr(av, "AudioResampler", no_resampling)
    flac = decode_audio(path, max_seconds=60)
    wav = write_audio(tmp_path / "same.wav", jfk, SAMPLE_RATE, container="wav", codec="pcm_s16le")
    np.testing.assert_array_equal(flac, decode_audio(wav, max_seconds=60))  # read natively, without PyAV
