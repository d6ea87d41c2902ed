"""Where the batched engine's forward passes run: openai-whisper's torch model, or CTranslate2.

Both take 30-s windows of 16 kHz audio and return sampled tokens with timestamps; everything around them
(planning, packing, splitting back, fallbacks) is shared in ``batched``.
"""

from __future__ import annotations

import copy
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from whisper.model import AudioEncoder, Whisper
from whisper.tokenizer import Tokenizer, get_tokenizer

from worker.engine.greedy import MAX_INITIAL_TIMESTAMP, Generated, Parts, generate_greedy, log_mel
from worker.engine.isolate import Row, encode_apart, isolate, parts_of, rows_for, silent_frames
from worker.engine.windows import Window
from worker.models.cache import inference_lock

# Decoder rows (one per piece) per pass on CPU. Measured on 2 cores with tiny.en in CTranslate2 when a row was a
# window: 16 beat 8 by 15%; a batch waits for its longest row, so much larger ones gain little.
CPU_BATCH_WINDOWS = 16


# Samples per window when greedy decoding fails its checks; the likeliest is kept, as transcribe()'s best_of.
BEST_OF = 5


def _best_of(samples: list[Generated]) -> list[Generated]:
    groups = [samples[i : i + BEST_OF] for i in range(0, len(samples), BEST_OF)]
    return [max(group, key=lambda d: d.avg_logprob) for group in groups]


class Backend(Protocol):
    multilingual: bool
    num_languages: int
    batch_windows: int

    def tokenizer(self, language: str | None, task: str) -> Tokenizer: ...

    def generate(
        self, windows: np.ndarray, tokenizer: Tokenizer, shared: list[Window | None] | None = None
    ) -> list[Generated]:
        """Greedy decoding: a result per window, or with ``shared`` (a window per input, None for one decoded
        whole) a result per piece of each shared window, each decoded on its own (``isolate``)."""
        ...

    def generate_sampled(
        self, windows: np.ndarray, tokenizer: Tokenizer, temperature: float, seed: int = 0
    ) -> list[Generated]:
        """``BEST_OF`` samples per window at ``temperature``, the likeliest kept; ``seed`` fixes the draws where the
        backend can be seeded (torch)."""
        ...

    def detect_language(self, windows: np.ndarray) -> list[str]: ...


def _tokenizer(multilingual: bool, num_languages: int, language: str | None, task: str) -> Tokenizer:
    return get_tokenizer(multilingual, num_languages=num_languages, language=language or "en", task=task)


def prepare_for_inference(model: Whisper, *, half: bool | None = None) -> Whisper:
    """Weights in fp16 once (no cast per call), LayerNorms in fp32 as whisper computes them; ``half`` defaults to
    whether the model is on a GPU (a test passes True to check the conversion on a CPU)."""
    if half is None:
        half = next(model.parameters()).device.type == "cuda"
    if not half or getattr(model, "_prepared_fp16", False):
        return model
    model.half()
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.float()
    model._prepared_fp16 = True  # type: ignore[attr-defined]
    return model


def bf16_encoder(encoder: AudioEncoder) -> AudioEncoder:
    """A bf16 copy of ``encoder`` for a CPU with native bf16, converted once and kept beside the fp32 model (which
    ``transcribe()`` still uses). Its LayerNorms stay fp32: whisper's LayerNorm computes in fp32 and casts back.
    Measured on 2 cores, a batch of 8 windows of tiny.en: 1.3 s against 2.0 s fp32 (AMD EPYC, avx512_bf16),
    417 ms against 1,255 ms (Sapphire Rapids, AMX)."""
    with _BF16_LOCK:
        converted = _BF16_COPIES.get(encoder)
        if converted is None:
            converted = copy.deepcopy(encoder).to(torch.bfloat16).eval()
            for module in converted.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.float()
            _BF16_COPIES[encoder] = converted
        return converted


# One bf16 copy per encoder, for every backend of its model; kept outside the module (an attribute would register it
# as a submodule, inside the fp32 model's parameters and state).
_BF16_COPIES: weakref.WeakKeyDictionary[AudioEncoder, AudioEncoder] = weakref.WeakKeyDictionary()
_BF16_LOCK = threading.Lock()


def configure_cuda() -> None:
    """cuDNN's attention builds a new plan for every key/value length, i.e. every decoding step; the
    flash and memory-efficient kernels do not."""
    if torch.cuda.is_available():
        torch.backends.cuda.enable_cudnn_sdp(False)


def gpu_batch_windows(model: Whisper, budget_bytes: float = 8e9) -> int:
    """Decoder rows per pass on a GPU: as many as keep the cross-attention cache (every decoder layer's keys and
    values for 1500 audio positions, fp16, per row) within ``budget_bytes``; 128 for tiny, 32 for large."""
    dims = model.dims
    per_window = dims.n_text_layer * 2 * dims.n_audio_ctx * dims.n_audio_state * 2
    return int(max(8, min(128, budget_bytes // per_window)))


class TorchBackend:
    def __init__(self, model: Whisper, batch_windows: int, bf16: bool = False) -> None:
        """``bf16``: the encoder runs in bf16 on CPU (``device.choose_precision``); the decoder stays as it is."""
        self.model = prepare_for_inference(model)
        self.device = next(model.parameters()).device
        use_bf16 = bf16 and self.device.type == "cpu"
        self.encoder: AudioEncoder = bf16_encoder(model.encoder) if use_bf16 else model.encoder
        self._decoder_dtype = next(model.decoder.parameters()).dtype
        self.multilingual = model.is_multilingual
        self.num_languages = model.num_languages
        if batch_windows <= 0:
            batch_windows = gpu_batch_windows(model) if self.device.type == "cuda" else CPU_BATCH_WINDOWS
        self.batch_windows = batch_windows
        self._lock = inference_lock(model)  # shared with the reference engine's transcribe()
        self._silence: torch.Tensor | None = None  # the encoder's output for a silent window

    def tokenizer(self, language: str | None, task: str) -> Tokenizer:
        return _tokenizer(self.multilingual, self.num_languages, language, task)

    def _mel(self, windows: np.ndarray, parts: Parts | None = None) -> torch.Tensor:
        return log_mel(torch.from_numpy(windows).to(self.device), self.model.dims.n_mels, parts)

    def _encode(self, mel: torch.Tensor) -> torch.Tensor:
        """The encoder's output in the decoder's precision (a bf16 encoder's output is cast once per pass)."""
        weights = next(self.encoder.parameters())
        return self.encoder(mel.to(weights.dtype)).to(self._decoder_dtype)

    def generate(
        self, windows: np.ndarray, tokenizer: Tokenizer, shared: list[Window | None] | None = None
    ) -> list[Generated]:
        with self._lock, torch.inference_mode():
            parts = parts_of(shared)
            mel = self._mel(windows, parts)
            if not shared or all(w is None for w in shared):
                return generate_greedy(self.model, None, tokenizer, features=self._encode(mel))
            encoded = encode_apart(self.encoder, mel, parts).to(self._decoder_dtype)
            rows = rows_for(shared, tokenizer.timestamp_begin, encoded.shape[1])
            results: dict[int, Generated] = {}
            # a row opened at a timestamp and a row decoded whole have prompts of different lengths
            for opened in (False, True):
                chosen = [i for i, row in enumerate(rows) if (row.start is not None) == opened]
                if not chosen:
                    continue
                picked = [rows[i] for i in chosen]
                features = self._isolated(encoded, picked)
                starts = [row.start for row in picked] if opened else None
                decoded = generate_greedy(self.model, None, tokenizer, features=features, starts=starts)
                results.update(zip(chosen, decoded, strict=True))
            return [results[i] for i in range(len(rows))]

    def _isolated(self, encoded: torch.Tensor, rows: list[Row]) -> torch.Tensor:
        if self._silence is None:
            self._silence = silent_frames(self.encoder, self.model.dims.n_mels).to(self._decoder_dtype)
        return isolate(encoded, rows, self._silence)

    def generate_sampled(
        self, windows: np.ndarray, tokenizer: Tokenizer, temperature: float, seed: int = 0
    ) -> list[Generated]:
        with self._lock, torch.inference_mode():
            # each window is encoded once; its BEST_OF samples share the output
            features = self._encode(self._mel(windows)).repeat_interleave(BEST_OF, dim=0)
            draws = torch.Generator(device=features.device).manual_seed(seed)
            samples = generate_greedy(
                self.model, None, tokenizer, temperature=temperature, features=features, generator=draws
            )
        return _best_of(samples)

    def detect_language(self, windows: np.ndarray) -> list[str]:
        with self._lock, torch.inference_mode():
            # whisper's detect_language takes the encoder's output as it is
            _, probs = self.model.detect_language(self._encode(self._mel(windows)))
        return [max(p, key=p.get) for p in probs]


class Ct2Backend:
    """CTranslate2 (int8 on CPU): the same tokens from a C++ decoder; needs the optional ``ctranslate2``."""

    def __init__(
        self,
        model_dir: Path,
        device: str,
        batch_windows: int,
        encoder: Callable[[], AudioEncoder],
        bf16: bool = False,
    ) -> None:
        """``encoder`` loads the same model's torch encoder, on the first shared window (see ``isolate``):
        CTranslate2's own encoder cannot keep a piece's attention to itself: through it, packed pieces would
        hear each other. ``bf16``: that torch encoder runs in bf16 on CPU (``device.choose_precision``)."""
        import ctranslate2

        self._ct2 = ctranslate2
        compute = "int8" if device == "cpu" else "float16"
        threads = os.cpu_count() or 1
        self.model: Any = ctranslate2.models.Whisper(
            str(model_dir), device=device, compute_type=compute, intra_threads=threads if device == "cpu" else 0
        )
        self.multilingual = bool(self.model.is_multilingual)
        self.n_mels = int(getattr(self.model, "n_mels", 80))
        self.num_languages = int(getattr(self.model, "num_languages", 99))
        self.batch_windows = batch_windows
        self._load_encoder = encoder
        self._bf16 = bf16 and device == "cpu"
        self._encoder: AudioEncoder | None = None
        self._lock = threading.Lock()
        self._silence: np.ndarray | None = None  # the encoder's output for a silent window

    def tokenizer(self, language: str | None, task: str) -> Tokenizer:
        return _tokenizer(self.multilingual, self.num_languages, language, task)

    def _features(self, windows: np.ndarray) -> Any:
        mel = log_mel(torch.from_numpy(windows), self.n_mels).numpy()
        return self._ct2.StorageView.from_array(np.ascontiguousarray(mel, dtype=np.float32))

    def _isolated(self, windows: np.ndarray, shared: list[Window | None], rows: list[Row]) -> Any:
        if self._encoder is None:
            loaded = self._load_encoder()
            self._encoder = bf16_encoder(loaded) if self._bf16 else loaded
        if self._silence is None:
            self._silence = silent_frames(self._encoder, self.n_mels).float().cpu().numpy()
        parts = parts_of(shared)
        with torch.inference_mode():
            encoded = encode_apart(self._encoder, log_mel(torch.from_numpy(windows), self.n_mels, parts), parts)
        mixed = isolate(encoded.float().cpu().numpy(), rows, self._silence)
        return self._ct2.StorageView.from_array(mixed)

    def _generate(
        self, windows: np.ndarray, tokenizer: Tokenizer, shared: list[Window | None] | None = None, **sampling: Any
    ) -> list[Generated]:
        prompt = list(tokenizer.sot_sequence)
        with self._lock:
            if shared and any(w is not None for w in shared):
                rows = rows_for(shared, tokenizer.timestamp_begin)
                features = self._isolated(windows, shared, rows)
                prompts = [prompt if row.start is None else [*prompt, row.start] for row in rows]
            else:
                features, prompts = self._features(windows), [prompt] * len(windows)
            results = self.model.generate(
                features,
                prompts,
                beam_size=1,
                max_length=448,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=[-1],
                max_initial_timestamp_index=round(MAX_INITIAL_TIMESTAMP / 0.02),
                **sampling,
            )
        decoded = []
        for result in results:
            best = max(range(len(result.scores)), key=lambda i: result.scores[i])  # length-normalised logprob
            tokens = [t for t in result.sequences_ids[best] if t < tokenizer.eot or t >= tokenizer.timestamp_begin]
            decoded.append(Generated(tokens, float(result.scores[best]), float(result.no_speech_prob)))
        return decoded

    def generate(
        self, windows: np.ndarray, tokenizer: Tokenizer, shared: list[Window | None] | None = None
    ) -> list[Generated]:
        return self._generate(windows, tokenizer, shared)

    def generate_sampled(
        self, windows: np.ndarray, tokenizer: Tokenizer, temperature: float, seed: int = 0
    ) -> list[Generated]:
        # ``seed`` is not used: CTranslate2 draws from generators of its own worker threads, which no call can seed
        # (``set_random_seed`` before each call was tried: the same window still sampled different text)
        samples = self._generate(
            windows, tokenizer, sampling_temperature=temperature, sampling_topk=0, num_hypotheses=BEST_OF
        )
        return [Generated(d.tokens, d.avg_logprob, d.no_speech_prob, temperature) for d in samples]

    def detect_language(self, windows: np.ndarray) -> list[str]:
        with self._lock:
            found = self.model.detect_language(self._features(windows))
        return [pairs[0][0].strip("<|>") for pairs in found]
