"""WHISPER_CPU_PRECISION: bf16 where the CPU multiplies bf16 natively, and the same transcripts as fp32."""

from __future__ import annotations

from pathlib import Path

import jiwer
import numpy as np
import pytest
import torch
from whisper.normalizers import EnglishTextNormalizer

from tests.support.conversation import DATA, PROMPTS
from tests.support.samples import JFK, JFK_TEXT, TEST_MODEL
from worker.audio.decode import decode_audio
from worker.engine.backends import Ct2Backend, TorchBackend
from worker.engine.batched import BatchedEngine
from worker.engine.device import CpuInfo, choose_precision, cpu_info
from worker.engine.options import TranscribeOptions
from worker.ops.health import check_device
from worker.service.app import build_engine
from worker.service.settings import Settings, SettingsError

SAPPHIRE_RAPIDS = "model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n"
ZEN4 = "model name\t: AMD EPYC 9R14\nflags\t\t: fpu avx512f avx512_vnni avx512_bf16\n"
ICE_LAKE = "model name\t: Intel(R) Xeon(R) Platinum 8375C\nflags\t\t: fpu avx512f avx512_vnni\n"
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd\n"


def test_cpu_info_reads_the_model_and_the_flags_that_matter() -> None:
    info = cpu_info(SAPPHIRE_RAPIDS + SAPPHIRE_RAPIDS.replace("8488C", "second socket"))
    assert info.model == "Intel(R) Xeon(R) Platinum 8488C"
    assert info.speed_flags() == {"amx_bf16": True, "amx_tile": True, "avx512_bf16": True, "avx512_vnni": False}
    assert cpu_info(GRAVITON) == CpuInfo("unknown", frozenset())


@pytest.mark.parametrize(
    ("text", "setting", "expected", "because"),
    [
        (SAPPHIRE_RAPIDS, "auto", "bf16", "amx_bf16, avx512_bf16"),
        (ZEN4, "auto", "bf16", "avx512_bf16"),
        (ICE_LAKE, "auto", "fp32", "neither amx_bf16 nor avx512_bf16"),
        (GRAVITON, "auto", "fp32", "neither"),
        (SAPPHIRE_RAPIDS, "fp32", "fp32", "WHISPER_CPU_PRECISION=fp32"),
        (ICE_LAKE, "bf16", "bf16", "no native bf16: emulated, slower"),
    ],
)
def test_auto_takes_bf16_only_where_the_cpu_has_it(text: str, setting: str, expected: str, because: str) -> None:
    chosen = choose_precision(setting, "cpu", cpu_info(text))
    assert chosen.name == expected
    assert because in chosen.reason


def test_a_gpu_keeps_fp16_and_a_bad_value_is_refused() -> None:
    assert choose_precision("bf16", "cuda", cpu_info(SAPPHIRE_RAPIDS)).name == "fp16"
    with pytest.raises(SettingsError, match="WHISPER_CPU_PRECISION"):
        choose_precision("fp8", "cpu", cpu_info(ZEN4))


def test_the_setting_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).cpu_precision == "auto"
    assert Settings.from_env({"WHISPER_CPU_PRECISION": "BF16"}).cpu_precision == "bf16"
    with pytest.raises(SettingsError, match="WHISPER_CPU_PRECISION must be one of auto, fp32, bf16"):
        Settings.from_env({"WHISPER_CPU_PRECISION": "half"})


def test_health_says_which_precision_runs_and_why() -> None:
    forced = check_device(Settings(device="cpu", cpu_precision="fp32"))
    assert forced.ok and forced.data["precision"] == "fp32"
    assert "fp32 (WHISPER_CPU_PRECISION=fp32)" in forced.detail
    auto = check_device(Settings(device="cpu"))
    here = choose_precision("auto", "cpu")
    assert (auto.data["precision"], auto.data["precision_reason"]) == (here.name, here.reason)
    assert set(auto.data["cpu_flags"]) == {"amx_bf16", "amx_tile", "avx512_bf16", "avx512_vnni"}


# ---------------------------------------------------------------------------------------------- real speech

# Real speech from the development corpus (tests/data/SOURCES.md) and its references.
CLIPS = [(DATA / f"{name}.flac", text) for name, text in sorted(PROMPTS.items())] + [(JFK, JFK_TEXT)]
normalise = EnglishTextNormalizer()


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [decode_audio(path, max_seconds=60) for path, _ in CLIPS]


def _transcripts(model_dir: Path, engine: str, precision: str, audios: list[np.ndarray]) -> tuple[list[str], object]:
    built = build_engine(
        Settings(model_dir=model_dir, default_model=TEST_MODEL, device="cpu", engine=engine, cpu_precision=precision)
    )
    assert isinstance(built, BatchedEngine)
    texts = [t.text for t in built.transcribe_many(TEST_MODEL, audios, TranscribeOptions(language="en"))]
    return [normalise(t) for t in texts], built._backend(TEST_MODEL)


@pytest.mark.parametrize("engine", ["ctranslate2", "batched"])
def test_bf16_transcribes_real_speech_as_fp32_does(
    engine: str, clips: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> None:
    model_dir = tmp_path_factory.mktemp("models")
    references = [normalise(text) for _, text in CLIPS]
    fp32, _ = _transcripts(model_dir, engine, "fp32", clips)
    bf16, backend = _transcripts(model_dir, engine, "bf16", clips)
    assert all(bf16), bf16
    # the encoder that ran is the bf16 copy (LayerNorms fp32); the model transcribe() uses stays fp32
    encoder = backend._encoder if isinstance(backend, Ct2Backend) else backend.encoder
    assert isinstance(backend, Ct2Backend | TorchBackend) and encoder is not None
    assert encoder.conv1.weight.dtype == torch.bfloat16 and encoder.ln_post.weight.dtype == torch.float32
    if isinstance(backend, TorchBackend):
        assert backend.model.encoder.conv1.weight.dtype == torch.float32
    # five clips, about 90 words: one word is 1.1 points; bf16 may cost at most that against the references
    assert jiwer.wer(references, bf16) <= jiwer.wer(references, fp32) + 0.012
    assert jiwer.wer(fp32, bf16) <= 0.03
