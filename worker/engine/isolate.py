"""Decode each piece of a shared window on its own, from one run of the encoder.

Packing short pieces into one window saves the encoder's work, but the window's pieces then hear each other:
one decoding reads them as one conversation (words drift across the silence between them), and the encoder's
attention mixes their sounds (one clip's voice changes another's words). On real speech the two cost about two
points of WER. So a shared window's encoder attends within each piece's own stretch (the piece and the silence
after it), and each piece gets its own decoder row: the encoder's output over that piece's frames, the output
for a silent window everywhere else, and a prompt that opens at the piece's start time. The row then reads like
the piece alone in a window, at the cost of one decoder row per piece instead of one per window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from whisper.model import AudioEncoder

from worker.audio import SAMPLE_RATE
from worker.engine.greedy import Parts, log_mel
from worker.engine.windows import PACK_GAP_SECONDS, WINDOW_SAMPLES, Window

FRAMES_PER_SECOND = 50  # encoder output frames: one per timestamp step (20 ms)
# Samples before an encoder frame's centre that its value depends on: half the STFT window (200) and the two
# spectrogram frames (160 each) that the convolutions read beside it; a sound starting later cannot touch it.
REACH_SAMPLES = 200 + 2 * 160
MARGIN_SECONDS = 0.3  # frames kept on each side of a piece: its onset and release, never a neighbour's speech
# A shared window's last piece keeps this much of the silence after it, as each piece before it keeps the gap to the
# next: the frames past that are read by no row, so they are not computed (on CPU; a GPU computes them, then drops
# them). In a half-empty window that is half the encoder's work.
TAIL_SAMPLES = int(PACK_GAP_SECONDS * SAMPLE_RATE)


@dataclass(frozen=True)
class Row:
    """One decoder row: window ``window`` of the batch, encoder frames ``first:last`` kept, the rest silence;
    ``start`` is the timestamp token its prompt ends with, or None for a window decoded whole."""

    window: int
    first: int
    last: int
    start: int | None


def rows_for(windows: Sequence[Window | None], timestamp_begin: int, frames: int = 1500) -> list[Row]:
    """A row per piece of each shared window given, one row for each None (decoded whole, as before)."""
    rows: list[Row] = []
    for index, window in enumerate(windows):
        if window is None:
            rows.append(Row(index, 0, frames, None))
            continue
        for piece, offset in window.placements:
            begin, end = offset / SAMPLE_RATE, (offset + piece.samples) / SAMPLE_RATE
            first = max(0, int((begin - MARGIN_SECONDS) * FRAMES_PER_SECOND))
            last = min(frames, int((end + MARGIN_SECONDS) * FRAMES_PER_SECOND) + 1)
            start = timestamp_begin + min(frames, round(begin * FRAMES_PER_SECOND))
            rows.append(Row(index, first, last, start))
    return rows


def kept_frames(rows: Sequence[Row], frames: int) -> np.ndarray:
    """``[rows, frames]``: True where a row keeps its window's encoder output."""
    mask = np.zeros((len(rows), frames), dtype=bool)
    for i, row in enumerate(rows):
        mask[i, row.first : row.last] = True
    return mask


Frames = TypeVar("Frames", np.ndarray, torch.Tensor)


def isolate(encoded: Frames, rows: Sequence[Row], silence: Frames) -> Frames:
    """``[rows, frames, width]`` decoder input from ``encoded`` ``[windows, frames, width]`` and ``silence``
    ``[frames, width]``, the encoder's output for a silent window; numpy arrays or torch tensors alike."""
    mask = kept_frames(rows, encoded.shape[1])[..., None]
    windows = [row.window for row in rows]
    if isinstance(encoded, torch.Tensor):
        keep = torch.from_numpy(mask).to(encoded.device)
        return torch.where(keep, encoded[torch.tensor(windows, device=encoded.device)], silence.unsqueeze(0))
    return np.ascontiguousarray(np.where(mask, encoded[windows], silence[None]), dtype=encoded.dtype)


def parts_of(shared: Sequence[Window | None] | None) -> list[list[tuple[int, int]] | None] | None:
    """The sample ranges of each shared window's pieces, in order, for ``log_mel``'s per-piece floors."""
    if not shared:
        return None
    return [None if w is None else sorted((off, off + p.samples) for p, off in w.placements) for w in shared]


Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, list[list[tuple[int, int]]]], torch.Tensor]


def _stretches(parts: Parts, frames: int) -> list[list[tuple[int, int]]]:
    """Each window's stretches as encoder frame ranges: piece i's runs from its start (the first piece's from 0)
    to the first frame the next piece's sound reaches, the last piece's to ``TAIL_SAMPLES`` past its end; a window
    decoded whole is one stretch, to its end."""
    per_frame = SAMPLE_RATE // FRAMES_PER_SECOND
    bounds = []
    for spans in parts:
        starts = [0] + [max(0, start - REACH_SAMPLES) // per_frame for start, _ in (spans or [])[1:]]
        end = min(frames, -(-(spans[-1][1] + TAIL_SAMPLES) // per_frame)) if spans else frames
        bounds.append(list(zip(starts, [*starts[1:], end], strict=True)))
    return bounds


def encode_apart(
    encoder: AudioEncoder,
    mel: torch.Tensor,
    parts: Parts | None,
    *,
    masked: bool | None = None,
) -> torch.Tensor:
    """openai-whisper's ``AudioEncoder.forward``, with each frame's attention kept within its piece's stretch:
    by one masked attention over all frames (``masked``, the default on GPUs) or one attention per stretch.
    Frames past a window's last stretch come out as zeros. ``mel`` goes to the encoder's device and precision
    first."""
    weights = next(encoder.parameters())
    x = F.gelu(encoder.conv1(mel.to(weights.device, weights.dtype)))
    x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = (x + encoder.positional_embedding).to(x.dtype)
    stretches = _stretches(parts or [None] * x.shape[0], x.shape[1])
    ends = [bounds[-1][1] for bounds in stretches]
    # On CPU each stretch attends on its own, which skips the masked-out blocks: attention over 1500 frames is
    # about a third of the encoder's arithmetic. On a GPU one masked kernel beats hundreds of small ones.
    if masked is None:
        masked = x.device.type != "cpu"
    if masked:
        out = _blocks(encoder, x, stretches, _attend_masked(stretches, x.shape[1], x.device))
        for window, end in enumerate(ends):
            out[window, end:] = 0
        return out
    out = torch.zeros_like(x)
    for window, end in enumerate(ends):  # each window only as far as its last stretch
        out[window, :end] = _blocks(encoder, x[window : window + 1, :end], stretches[window : window + 1])[0]
    return out


def _blocks(
    encoder: AudioEncoder, x: torch.Tensor, stretches: list[list[tuple[int, int]]], attend: Attend | None = None
) -> torch.Tensor:
    for block in encoder.blocks:
        x = x + _attention(block.attn, block.attn_ln(x), stretches, attend or _attend_apart)
        x = x + block.mlp(block.mlp_ln(x))
    return encoder.ln_post(x)


def silent_frames(encoder: AudioEncoder, n_mels: int) -> torch.Tensor:
    """``[frames, width]``: the encoder's output for a silent window, what a row sees outside its piece."""
    weights = next(encoder.parameters())
    silence = torch.zeros(1, WINDOW_SAMPLES, device=weights.device)
    with torch.inference_mode():
        return encode_apart(encoder, log_mel(silence, n_mels), None)[0]


def _attend_apart(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, stretches: list[list[tuple[int, int]]]
) -> torch.Tensor:
    out = torch.empty_like(q)
    for window, bounds in enumerate(stretches):
        for a, b in bounds:
            if a >= b:
                continue
            part = slice(window, window + 1), slice(None), slice(a, b)
            out[part] = F.scaled_dot_product_attention(q[part], k[part], v[part])
    return out


def _attend_masked(stretches: list[list[tuple[int, int]]], frames: int, device: torch.device) -> Attend:
    ids = torch.zeros(len(stretches), frames, dtype=torch.long)
    for window, bounds in enumerate(stretches):
        ids[window] = len(bounds)  # the frames past the last stretch, which no row reads, among themselves
        for i, (a, b) in enumerate(bounds):
            ids[window, a:b] = i
    ids = ids.to(device)
    allowed = (ids[:, :, None] == ids[:, None, :]).unsqueeze(1)  # [windows, 1 (heads), frames, frames]
    return lambda q, k, v, _: F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def _attention(
    attn: torch.nn.Module, x: torch.Tensor, stretches: list[list[tuple[int, int]]], attend: Attend
) -> torch.Tensor:
    batch, frames, width = x.shape
    heads = attn.n_head

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(batch, frames, heads, width // heads).transpose(1, 2)

    out = attend(split(attn.query(x)), split(attn.key(x)), split(attn.value(x)), stretches)
    return attn.out(out.transpose(1, 2).reshape(batch, frames, width))
