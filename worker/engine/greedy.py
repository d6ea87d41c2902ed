"""Batched greedy decoding with timestamps for openai-whisper models, without per-row Python work per step.

openai-whisper's ``decode()`` applies its timestamp rules row by row in Python at every step, which at batch
64 costs more than the model. Here the same rules (whisper's ``ApplyTimestampRules``, ``SuppressBlank`` and
``SuppressTokens``) are tensor operations over the whole batch, so a step is a few kernels whatever the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from whisper.audio import HOP_LENGTH, N_FFT, mel_filters
from whisper.model import Whisper
from whisper.tokenizer import Tokenizer

MAX_INITIAL_TIMESTAMP = 1.0  # seconds: the first segment must start near the window's start


@dataclass(frozen=True)
class Generated:
    tokens: list[int]  # sampled tokens, timestamps included, without the prompt and the end token
    avg_logprob: float
    no_speech_prob: float
    temperature: float = 0.0


# Per window: the sample ranges of the pieces it holds, in order, or None for a window decoded whole.
Parts = Sequence[Sequence[tuple[int, int]] | None]


def log_mel(windows: torch.Tensor, n_mels: int, parts: Parts | None = None) -> torch.Tensor:
    """Whisper's log-Mel spectrogram for a batch of 30-s windows, normalised per window (not per batch).

    ``parts`` (per window: sample ranges of the pieces it holds, in order, or None) normalises each piece, and
    the silence after it, on its own: Whisper floors everything 80 dB below the window's loudest sound, so a
    quiet recording beside a loud one would lose its own quieter sounds to the loud one's floor."""
    window = torch.hann_window(N_FFT, device=windows.device)
    stft = torch.stft(windows, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    magnitudes = stft[..., :-1].abs() ** 2
    spec = mel_filters(windows.device, n_mels) @ magnitudes
    log_spec = torch.clamp(spec, min=1e-10).log10()
    floor = log_spec.amax(dim=(-2, -1), keepdim=True).expand(-1, 1, log_spec.shape[-1]).clone()
    for row, spans in enumerate(parts or []):
        for i, (start, end) in enumerate(spans or []):
            first = -(-start // HOP_LENGTH)
            last = max(first + 1, end // HOP_LENGTH)
            until = -(-spans[i + 1][0] // HOP_LENGTH) if i + 1 < len(spans) else log_spec.shape[-1]
            floor[row, 0, first if i else 0 : until] = log_spec[row, :, first:last].amax()
    log_spec = torch.maximum(log_spec, floor - 8.0)
    return (log_spec + 4.0) / 4.0


def _suppressed(tokenizer: Tokenizer) -> tuple[int, ...]:
    tokens = set(tokenizer.non_speech_tokens)
    tokens |= {tokenizer.transcribe, tokenizer.translate, tokenizer.sot, tokenizer.sot_prev, tokenizer.sot_lm}
    tokens.add(tokenizer.no_timestamps)
    if tokenizer.no_speech is not None:
        tokens.add(tokenizer.no_speech)
    return tuple(sorted(tokens))


class _TimestampRules:
    """Per-row decoding state, updated once per step, turned into one mask over the vocabulary."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        batch: int,
        vocab: int,
        device: torch.device,
        precision: float,
        start: torch.Tensor | None = None,
    ) -> None:
        self.begin = tokenizer.timestamp_begin
        self.eot = tokenizer.eot
        self.index = torch.arange(vocab, device=device)
        self.suppress = torch.zeros(vocab, dtype=torch.bool, device=device)
        self.suppress[list(_suppressed(tokenizer))] = True
        self.blank = torch.zeros(vocab, dtype=torch.bool, device=device)
        self.blank[[*tokenizer.encode(" "), tokenizer.eot]] = True
        self.max_initial = self.begin + round(MAX_INITIAL_TIMESTAMP / precision)
        # Before the first token both read True: whisper counts "fewer than two tokens" as a timestamp pair.
        self.last_ts = torch.ones(batch, dtype=torch.bool, device=device)
        self.penult_ts = torch.ones(batch, dtype=torch.bool, device=device)
        self.last_value = torch.full((batch,), -1, dtype=torch.long, device=device)  # latest timestamp token
        self.opened = start is not None  # rows whose prompt ends with their opening timestamp
        if start is not None:
            self.last_value = start.to(device)

    def apply(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        idx = self.index.unsqueeze(0)
        mask = self.suppress.unsqueeze(0).expand_as(logits).clone()
        if step == 0:
            mask |= self.blank.unsqueeze(0)
            if not self.opened:
                mask |= (idx < self.begin) | (idx > self.max_initial)  # start with a timestamp near 0
            else:
                mask |= idx >= self.begin  # the prompt's timestamp opened the segment: text comes first
        else:
            pair_closed = (self.last_ts & self.penult_ts).unsqueeze(1)
            mask |= pair_closed & (idx >= self.begin)  # after a timestamp pair comes text
            open_pair = (self.last_ts & ~self.penult_ts).unsqueeze(1)
            mask |= open_pair & (idx < self.eot)  # after text and one timestamp: another timestamp or the end
            # timestamps never go back; after a lone timestamp the same value may repeat to open a segment
            lowest = torch.where(self.last_ts & ~self.penult_ts, self.last_value, self.last_value + 1)
            mask |= (idx >= self.begin) & (idx < lowest.unsqueeze(1)) & (self.last_value >= 0).unsqueeze(1)
        logits = logits.masked_fill(mask, float("-inf"))
        logprobs = F.log_softmax(logits, dim=-1)
        # when timestamps together are likelier than any single text token, a timestamp it is
        timestamp_mass = logprobs[:, self.begin :].logsumexp(dim=-1)
        best_text = logprobs[:, : self.begin].max(dim=-1).values
        force = (timestamp_mass > best_text).unsqueeze(1) & (idx < self.begin)
        return logits.masked_fill(force, float("-inf"))

    def advance(self, chosen: torch.Tensor) -> None:
        is_ts = chosen >= self.begin
        self.penult_ts = self.last_ts
        self.last_ts = is_ts
        self.last_value = torch.where(is_ts, chosen, self.last_value)


@torch.inference_mode()
def generate_greedy(
    model: Whisper,
    mel: torch.Tensor | None,
    tokenizer: Tokenizer,
    *,
    temperature: float = 0.0,
    max_tokens: int = 224,
    precision: float = 0.02,
    features: torch.Tensor | None = None,
    starts: list[int] | None = None,
    generator: torch.Generator | None = None,
) -> list[Generated]:
    """Decoding with timestamps of a batch of log-Mel windows ``[batch, n_mels, 3000]``: greedy at temperature
    0, else one sample per row from the filtered distribution.

    ``features`` replaces the encoder's output for ``mel``; ``starts`` gives each row a timestamp token that opens
    its first segment (a piece placed later in its window), returned as the row's first token; ``generator`` draws
    the samples at a raised temperature."""
    if features is not None:
        audio_features = features
    else:
        assert mel is not None, "mel or features"
        audio_features = model.encoder(mel.to(next(model.parameters()).dtype))
    batch = audio_features.shape[0]
    device = audio_features.device
    prompt = list(tokenizer.sot_sequence)
    sot_index = prompt.index(tokenizer.sot)
    begin = len(prompt)  # where the returned tokens start: an opening timestamp is returned with them
    start = torch.tensor(starts, dtype=torch.long, device=device) if starts is not None else None
    tokens = torch.tensor([prompt] * batch, device=device)
    if start is not None:
        tokens = torch.cat([tokens, start.unsqueeze(1)], dim=1)
    rules = _TimestampRules(tokenizer, batch, model.dims.n_vocab, device, precision, start)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    sum_logprobs = torch.zeros(batch, device=device)
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    no_speech = torch.zeros(batch, device=device)
    cache, hooks = model.install_kv_cache_hooks()
    try:
        for step in range(max_tokens):
            fresh = tokens if step == 0 else tokens[:, -1:]
            logits = model.decoder(fresh, audio_features, kv_cache=cache).float()
            if step == 0 and tokenizer.no_speech is not None:
                no_speech = logits[:, sot_index].softmax(dim=-1)[:, tokenizer.no_speech]
            logits = rules.apply(logits[:, -1], step)
            if temperature > 0:
                chosen = torch.multinomial((logits / temperature).softmax(dim=-1), 1, generator=generator).squeeze(1)
            else:
                chosen = logits.argmax(dim=-1)
            logprob = F.log_softmax(logits, dim=-1).gather(1, chosen.unsqueeze(1)).squeeze(1)
            chosen = torch.where(finished, torch.full_like(chosen, tokenizer.eot), chosen)
            sum_logprobs += torch.where(finished, torch.zeros_like(logprob), logprob)
            lengths += (~finished).long()
            rules.advance(chosen)
            tokens = torch.cat([tokens, chosen.unsqueeze(1)], dim=1)
            finished |= chosen == tokenizer.eot
            # one host sync per 8 steps: checking every step stalls the GPU queue
            if step % 8 == 7 and bool(finished.all()):
                break
    finally:
        for hook in hooks:
            hook.remove()
    sampled = tokens[:, begin:].cpu().numpy()
    avg = (sum_logprobs / lengths.clamp(min=1)).cpu().numpy()
    no_speech_np = no_speech.float().cpu().numpy()
    results = []
    for row in range(batch):
        seq = sampled[row]
        ends = np.flatnonzero(seq == tokenizer.eot)
        seq = seq[: ends[0]] if ends.size else seq
        results.append(Generated([int(t) for t in seq], float(avg[row]), float(no_speech_np[row]), temperature))
    return results
