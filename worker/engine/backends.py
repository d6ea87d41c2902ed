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
from whisper.audio import HOP_LENGTH
from whisper.model import AudioEncoder, Whisper, disable_sdpa
from whisper.timing import dtw, median_filter
from whisper.tokenizer import Tokenizer, get_tokenizer

from worker.engine.greedy import MAX_INITIAL_TIMESTAMP, Generated, Parts, generate_greedy, log_mel
from worker.engine.isolate import Row, encode_apart, isolate, parts_of, rows_for, silent_frames
from worker.engine.windows import WINDOW_SAMPLES, Piece, Window
from worker.engine.words import Alignment, token_starts
from worker.models.cache import inference_lock

# Decoder rows (one per piece) per pass on CPU. Measured on 2 cores with tiny.en in CTranslate2 when a row was a
# window: 16 beat 8 by 15%; a batch waits for its longest row, so much larger ones gain little.
CPU_BATCH_WINDOWS = 16


# transcribe()'s median filter over the alignment heads' attention, in the torch and the CTranslate2 alignment
MEDFILT_WIDTH = 7

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

    def align(
        self, windows: np.ndarray, tokenizer: Tokenizer, texts: list[list[int]], num_frames: list[int]
    ) -> list[Alignment]:
        """Word timings' raw material (``words``): each window's text matched to its first ``num_frames``."""
        ...


def _alone(num_frames: list[int]) -> list[Window | None]:
    """Each alignment window as a piece alone at its start: the encoder reads only the span aligned and the silence
    after it (``isolate``), as it read a piece decoded on its own; on CPU a short span costs a short encoder pass."""
    return [Window([(Piece(-1, 0, min(WINDOW_SAMPLES, frames * HOP_LENGTH)), 0)]) for frames in num_frames]


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

    def align(
        self, windows: np.ndarray, tokenizer: Tokenizer, texts: list[list[int]], num_frames: list[int]
    ) -> list[Alignment]:
        """``whisper.timing.find_alignment`` for a batch: one encoder and one decoder pass for all rows (the text
        forced, rows padded at their end, which a causal decoder never reads), then DTW per row."""
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        rows = [[*prompt, *text, tokenizer.eot] for text in texts]
        width = max(len(row) for row in rows)
        tokens = torch.tensor([row + [tokenizer.eot] * (width - len(row)) for row in rows], device=self.device)
        heads: dict[int, list[int]] = {}
        for layer, head in self.model.alignment_heads.indices().T.tolist():
            heads.setdefault(layer, []).append(head)
        kept: dict[int, torch.Tensor] = {}  # per layer: its alignment heads' attention logits, only those
        # under the model's lock: a hook must see only this pass (transcribe() on another thread shares the model)
        with self._lock, torch.inference_mode():
            shared = _alone(num_frames)
            parts = parts_of(shared)
            encoded = encode_apart(self.encoder, self._mel(windows, parts), parts).to(self._decoder_dtype)
            features = self._isolated(encoded, rows_for(shared, tokenizer.timestamp_begin, encoded.shape[1]))
            # the decoder's attention logits come only from whisper's own attention, not from SDPA (the encoder
            # keeps SDPA: through whisper's own attention its 1,500 positions took three times as long)
            with disable_sdpa():
                hooks = [
                    self.model.decoder.blocks[layer].cross_attn.register_forward_hook(
                        lambda _m, _in, outs, layer=layer: kept.__setitem__(layer, outs[-1][:, heads[layer]])
                    )
                    for layer in heads
                ]
                try:
                    logits = self.model.decoder(tokens, features)
                finally:
                    for hook in hooks:
                        hook.remove()
        attention = torch.cat([kept[layer] for layer in sorted(heads)], dim=1).float()
        probs = logits[:, len(tokenizer.sot_sequence) :, : tokenizer.eot].float().softmax(dim=-1)
        aligned = []
        for row, (text, frames) in enumerate(zip(texts, num_frames, strict=True)):
            # as find_alignment: softmax over the frames, standardised per frame, median-filtered, heads averaged
            weights = attention[row, :, : len(rows[row]), : frames // 2].softmax(dim=-1)
            std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
            weights = median_filter((weights - mean) / std, MEDFILT_WIDTH)
            matrix = weights.mean(dim=0)[len(tokenizer.sot_sequence) : -1]
            text_indices, time_indices = dtw(-matrix)
            positions = torch.arange(len(text), device=probs.device)
            chosen = probs[row, positions, torch.tensor(text, dtype=torch.long, device=probs.device)]
            aligned.append(Alignment(token_starts(text_indices, time_indices), chosen.tolist()))
        return aligned


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

    def align(
        self, windows: np.ndarray, tokenizer: Tokenizer, texts: list[list[int]], num_frames: list[int]
    ) -> list[Alignment]:
        """CTranslate2's own alignment (the alignment heads in the converted config, DTW inside; it adds the
        no-timestamps token after the prompt itself) over the torch encoder's output for each span alone, as for a
        shared window's piece: a short span costs a short encoder pass."""
        shared = _alone(num_frames)
        with self._lock:
            results = self.model.align(
                self._isolated(windows, shared, rows_for(shared, tokenizer.timestamp_begin)),
                list(tokenizer.sot_sequence),
                texts,
                num_frames,
                median_filter_width=MEDFILT_WIDTH,
            )
        aligned = []
        for result in results:
            path = np.array(result.alignments, dtype=np.int64).reshape(-1, 2)
            aligned.append(Alignment(token_starts(path[:, 0], path[:, 1]), list(result.text_token_probs)))
        return aligned
