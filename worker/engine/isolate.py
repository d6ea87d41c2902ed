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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from whisper.model import AudioEncoder

from worker.audio import SAMPLE_RATE
from worker.engine.windows import Window

FRAMES_PER_SECOND = 50  # encoder output frames: one per timestamp step (20 ms)
MARGIN_SECONDS = 0.3  # frames kept on each side of a piece: its onset and release, never a neighbour's speech


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


def isolate(encoded: np.ndarray, rows: Sequence[Row], silence: np.ndarray) -> np.ndarray:
    """``[rows, frames, width]`` decoder input from ``encoded`` ``[windows, frames, width]`` and ``silence``
    ``[frames, width]``, the encoder's output for a silent window."""
    mask = kept_frames(rows, encoded.shape[1])[..., None]
    picked = encoded[[row.window for row in rows]]
    return np.ascontiguousarray(np.where(mask, picked, silence[None]), dtype=encoded.dtype)


def parts_of(shared: Sequence[Window | None] | None) -> list[list[tuple[int, int]] | None] | None:
    """The sample ranges of each shared window's pieces, in order, for ``log_mel``'s per-piece floors."""
    if not shared:
        return None
    return [None if w is None else sorted((off, off + p.samples) for p, off in w.placements) for w in shared]


def _stretches(parts: Sequence[Sequence[tuple[int, int]] | None], frames: int) -> torch.Tensor:
    """``[windows, frames]``: which piece's stretch each encoder frame is in (a window decoded whole: all 0)."""
    ids = torch.zeros(len(parts), frames, dtype=torch.long)
    for row, spans in enumerate(parts):
        for i, (start, _) in enumerate(spans or []):
            if i:
                ids[row, start * FRAMES_PER_SECOND // SAMPLE_RATE :] = i
    return ids


def encode_apart(
    encoder: AudioEncoder, mel: torch.Tensor, parts: Sequence[Sequence[tuple[int, int]] | None] | None
) -> torch.Tensor:
    """openai-whisper's ``AudioEncoder.forward``, with each frame's attention kept within its piece's stretch."""
    x = F.gelu(encoder.conv1(mel))
    x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = (x + encoder.positional_embedding).to(x.dtype)
    ids = _stretches(parts or [None] * x.shape[0], x.shape[1]).to(x.device)
    allowed = (ids[:, :, None] == ids[:, None, :]).unsqueeze(1)  # [windows, 1 (heads), frames, frames]
    for block in encoder.blocks:
        x = x + _attention(block.attn, block.attn_ln(x), allowed)
        x = x + block.mlp(block.mlp_ln(x))
    return encoder.ln_post(x)


def _attention(attn: torch.nn.Module, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    batch, frames, width = x.shape
    heads = attn.n_head

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(batch, frames, heads, width // heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(
        split(attn.query(x)), split(attn.key(x)), split(attn.value(x)), attn_mask=allowed
    )
    return attn.out(out.transpose(1, 2).reshape(batch, frames, width))
