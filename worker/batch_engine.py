"""The batched engine: windows from many jobs in one forward pass, results split back per job.

Each job's audio is cut at pauses into pieces of at most 30 s (``windows``); short pieces from any job share a
window, separated by silence. One greedy pass with timestamps decodes a batch of windows; each decoded segment
goes back to the piece it overlaps, with its times moved onto that job's timeline. Whatever cannot be split
back cleanly (a segment across two pieces, a piece left without text) is decoded again alone, and a window
whose text looks wrong (repetitive, or improbable) is decoded again at rising temperatures, as
openai-whisper's ``transcribe()`` does. Options that need the reference loop (word timestamps, beam search,
an initial prompt) go through ``Engine`` unchanged.

Calls from several threads (one per message in progress) meet in one queue: the model thread takes every
request waiting when it becomes free, so messages fetched and decoded meanwhile share the next batch.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch
from whisper.tokenizer import Tokenizer

from worker.backends import Backend
from worker.decode import SAMPLE_RATE
from worker.engine import Engine, TranscribeOptions, check_options
from worker.errors import ResourceExhausted
from worker.greedy import Decoded
from worker.logs import logger
from worker.transcribe_progress import PercentHook
from worker.transcript import Segment, Transcript
from worker.windows import Piece, Window, pack, pieces_of, single

TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)  # transcribe()'s fallback ladder after greedy
COMPRESSION_RATIO_LIMIT = 2.4
LOGPROB_LIMIT = -1.0
NO_SPEECH_LIMIT = 0.6
STRADDLE_SECONDS = 0.5  # a segment reaching this far into a second piece belongs to neither alone
TIME_PRECISION = 0.02
LINGER_SECONDS = 0.05
MAX_REQUESTS_PER_PASS = 64
MAX_ROUNDS = 4  # windows of their own for what a shared window could not place, then for what is left of those

BackendFor = Callable[[str], Backend]


@dataclass
class _Span:
    start: float  # seconds in the window
    end: float | None  # None: the window ended before the segment's closing timestamp
    tokens: list[int]


def _spans(tokens: list[int], begin: int) -> tuple[list[_Span], float | None]:
    """Segments from ``<|t0|> text <|t1|><|t1'|> text <|t2|>...``; text before any timestamp starts at 0.

    Also the time of a last, lone timestamp: Whisper's way of saying speech starts there but runs past what
    it was shown, to be transcribed from there in a window of its own."""
    spans: list[_Span] = []
    start: float | None = None
    text: list[int] = []
    for token in tokens:
        if token >= begin:
            at = (token - begin) * TIME_PRECISION
            if text:
                spans.append(_Span(start or 0.0, at, text))
                text, start = [], None
            else:
                start = at
        else:
            if start is None:
                start = spans[-1].end if spans and spans[-1].end is not None else 0.0
            text.append(token)
    if text:
        spans.append(_Span(start or 0.0, None, text))
        return spans, None
    return spans, start  # a timestamp after a closed segment, then the end: resume from there


def compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _acceptable(decoded: Decoded, text: str) -> bool:
    if decoded.no_speech_prob > NO_SPEECH_LIMIT and decoded.avg_logprob < LOGPROB_LIMIT:
        return True  # silence: transcribe() drops it, and so do we
    return compression_ratio(text) <= COMPRESSION_RATIO_LIMIT and decoded.avg_logprob >= LOGPROB_LIMIT


def _silent(decoded: Decoded) -> bool:
    return decoded.no_speech_prob > NO_SPEECH_LIMIT and decoded.avg_logprob < LOGPROB_LIMIT


@dataclass
class _PieceText:
    spans: list[tuple[float, float, str, Decoded, float]] = field(default_factory=list)  # start, end, text, ...


class _Split:
    """Split one decoded window back into its pieces, or say which pieces need their own window."""

    def __init__(self, window: Window, decoded: Decoded, tokenizer: Tokenizer) -> None:
        self.window = window
        self.decoded = decoded
        self.tokenizer = tokenizer

    def run(self) -> tuple[dict[Piece, _PieceText], list[Piece]]:
        placed = [(p, off / SAMPLE_RATE, (off + p.samples) / SAMPLE_RATE) for p, off in self.window.placements]
        found: dict[Piece, _PieceText] = {p: _PieceText() for p, _ in self.window.placements}
        redo: set[Piece] = set()
        spans, tail = _spans(self.decoded.tokens, self.tokenizer.timestamp_begin)
        for span in spans:
            end = span.end if span.end is not None else placed[-1][2] if len(placed) == 1 else None
            if end is None:  # unfinished last segment in a shared window: whose it is cannot be told
                end = max(hi for _, _, hi in placed)
                redo.update(p for p, lo, hi in placed if hi > span.start)
                continue
            overlaps = sorted(
                ((min(end, hi) - max(span.start, lo), p, lo, hi) for p, lo, hi in placed),
                key=lambda item: item[0],
                reverse=True,
            )
            best, piece, lo, hi = overlaps[0]
            if len(overlaps) > 1 and overlaps[1][0] > STRADDLE_SECONDS:
                redo.update({piece, overlaps[1][1]})
                continue
            if best <= 0 and len(placed) > 1:
                # text in the silence between pieces: the nearest piece's, if close enough
                nearest = min(placed, key=lambda item: min(abs(span.start - item[2]), abs(end - item[1])))
                piece, lo, hi = nearest
                if min(abs(span.start - hi), abs(end - lo)) > 1.0:
                    continue
            text = self.tokenizer.decode(span.tokens)
            start = min(max(span.start, lo), hi) - lo
            found[piece].spans.append((start, min(max(end, lo), hi) - lo, text, self.decoded, self.decoded.temperature))
        rest: list[Piece] = []
        for piece, lo, hi in placed:
            if piece in redo:
                continue
            if tail is not None and hi - max(tail, lo) >= 1.0 and found[piece].spans and tail > lo + 0.5:
                # transcribed up to ``tail``: the rest of this piece gets a window of its own
                rest.append(Piece(piece.job, piece.start + int((tail - lo) * SAMPLE_RATE), piece.end))
            elif not found[piece].spans and hi - lo >= 1.0 and len(placed) > 1:
                redo.add(piece)  # a piece the decoder skipped, or said it would come back to
        for piece in redo:
            found.pop(piece, None)
        return found, sorted([*redo, *rest], key=lambda p: (p.job, p.start))


class EngineStats:
    """Counters since start, for benchmarks and logs: forward passes, windows, fallbacks, seconds decoding."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, float] = defaultdict(float)

    def count(self, **amounts: float) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self.values[name] += amount

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {k: round(v, 3) for k, v in self.values.items()}


@dataclass
class _Request:
    model: str
    audios: list[np.ndarray]
    options: TranscribeOptions
    future: Future = field(default_factory=Future)
    progress: PercentHook | None = None


class BatchedEngine:
    """``Engine``'s interface, batched across calls; thread-safe."""

    def __init__(
        self, reference: Engine, backend_for: BackendFor, *, name: str = "batched", pack_windows: bool = True
    ) -> None:
        self.name = name
        self.reference = reference
        self._backend_for = backend_for
        self._backends: dict[str, Backend] = {}
        self._backends_lock = threading.Lock()
        self.models = _Preloader(self)  # the runner preloads the default model through this
        self.stats = EngineStats()
        self._pack = pack_windows
        self._pending: list[_Request] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    # --- public interface -------------------------------------------------------------------------
    def transcribe(
        self, model_name: str, audio: np.ndarray, options: TranscribeOptions, progress: PercentHook | None = None
    ) -> Transcript:
        if not self.batchable(options):
            return self.reference.transcribe(model_name, audio, options, progress=progress)
        request = _Request(model_name, [audio], options, progress=progress)
        self._submit(request)
        return request.future.result()[0]

    def transcribe_many(
        self, model_name: str, audios: list[np.ndarray], options: TranscribeOptions
    ) -> list[Transcript]:
        """Transcribe several audios in one batch; for callers that already hold many (benchmarks, backfills)."""
        if not self.batchable(options):
            return [self.reference.transcribe(model_name, audio, options) for audio in audios]
        return self._run(model_name, audios, options, [None] * len(audios))

    @staticmethod
    def batchable(options: TranscribeOptions) -> bool:
        return not (options.word_timestamps or options.beam_size or options.initial_prompt)

    # --- the model thread -------------------------------------------------------------------------
    def _submit(self, request: _Request) -> None:
        with self._wake:
            self._pending.append(request)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="batched-engine", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._pending:
                    self._wake.wait()
                # Messages started together reach here a few milliseconds apart: a short wait lets them share
                # the pass instead of the first one going alone.
                deadline = time.monotonic() + LINGER_SECONDS
                while len(self._pending) < MAX_REQUESTS_PER_PASS and (left := deadline - time.monotonic()) > 0:
                    self._wake.wait(left)
                taken, self._pending = self._pending, []
            groups: dict[tuple[str, TranscribeOptions], list[_Request]] = defaultdict(list)
            for request in taken:
                groups[(request.model, request.options)].append(request)
            for (model, options), requests in groups.items():
                audios = [r.audios[0] for r in requests]
                hooks = [r.progress for r in requests]
                try:
                    transcripts = self._run(model, audios, options, hooks)
                except BaseException as exc:  # each caller gets the failure in its own thread
                    for request in requests:
                        request.future.set_exception(exc)
                    continue
                for request, transcript in zip(requests, transcripts, strict=True):
                    request.future.set_result([transcript])

    # --- batching ---------------------------------------------------------------------------------
    def _backend(self, model_name: str) -> Backend:
        with self._backends_lock:
            if model_name not in self._backends:
                self._backends[model_name] = self._backend_for(model_name)
            return self._backends[model_name]

    def _run(
        self,
        model_name: str,
        audios: list[np.ndarray],
        options: TranscribeOptions,
        hooks: list[PercentHook | None],
    ) -> list[Transcript]:
        backend = self._backend(model_name)
        check_options(model_name, backend.multilingual, options)
        started = time.monotonic()
        pieces = {job: pieces_of(job, audio) for job, audio in enumerate(audios)}
        languages = self._languages(backend, audios, pieces, options)
        texts: dict[Piece, _PieceText] = {}
        for language in sorted(set(languages)):
            jobs = [j for j, lang in enumerate(languages) if lang == language]
            tokenizer = backend.tokenizer(language, options.task)
            group = [p for j in jobs for p in pieces[j]]
            try:
                texts.update(self._decode_pieces(backend, tokenizer, audios, group, hooks))
            except torch.cuda.OutOfMemoryError as exc:
                torch.cuda.empty_cache()
                raise ResourceExhausted(f"GPU out of memory: {exc}") from exc
        by_job: dict[int, list[tuple[Piece, _PieceText]]] = defaultdict(list)
        for piece, found in texts.items():
            by_job[piece.job].append((piece, found))
        transcripts = [
            self._assemble(audio, sorted(by_job[job], key=lambda item: item[0].start), languages[job], options)
            for job, audio in enumerate(audios)
        ]
        logger.debug(
            "batch transcribed",
            extra={"jobs": len(audios), "pieces": len(texts), "seconds": round(time.monotonic() - started, 3)},
        )
        return transcripts

    def _languages(
        self, backend: Backend, audios: list[np.ndarray], pieces: dict[int, list[Piece]], options: TranscribeOptions
    ) -> list[str]:
        if not backend.multilingual:
            return ["en"] * len(audios)
        if options.language:
            return [options.language] * len(audios)
        firsts = [Window([(pieces[j][0], 0)]) if pieces[j] else Window() for j in range(len(audios))]
        windows = np.stack([w.audio(audios) for w in firsts])
        return backend.detect_language(windows)

    def _decode_pieces(
        self,
        backend: Backend,
        tokenizer: Tokenizer,
        audios: list[np.ndarray],
        pieces: list[Piece],
        hooks: list[PercentHook | None],
    ) -> dict[Piece, _PieceText]:
        progress = _Progress(audios, hooks)
        texts: dict[Piece, _PieceText] = {}
        windows = pack(pieces) if self._pack else single(pieces)
        redo = self._decode_windows(backend, tokenizer, audios, windows, texts, progress)
        for _ in range(MAX_ROUNDS):
            if not redo:
                break
            logger.debug("pieces decoded again alone", extra={"pieces": len(redo)})
            redo = self._decode_windows(backend, tokenizer, audios, single(redo), texts, progress)
        return texts

    def _decode_windows(
        self,
        backend: Backend,
        tokenizer: Tokenizer,
        audios: list[np.ndarray],
        windows: list[Window],
        texts: dict[Piece, _PieceText],
        progress: _Progress,
    ) -> list[Piece]:
        """Decode ``windows`` in passes of ``batch_windows``; return the pieces that need a window of their own.

        A window whose greedy text fails transcribe()'s checks is split up if shared; if alone, it is sampled
        again at rising temperatures, all such windows of a pass together, keeping the last try if none pass."""
        redo: list[Piece] = []

        def accept(window: Window, decoded: Decoded) -> None:
            found, again = _Split(window, decoded, tokenizer).run()
            texts.update(found)
            redo.extend(again)

        size = max(1, backend.batch_windows)
        for first in range(0, len(windows), size):
            chunk = windows[first : first + size]
            batch = np.stack([w.audio(audios) for w in chunk])
            started = time.monotonic()
            retry: list[tuple[Window, np.ndarray]] = []
            for window, audio, decoded in zip(chunk, batch, backend.decode(batch, tokenizer), strict=True):
                if _acceptable(decoded, self._text(tokenizer, decoded)):
                    accept(window, decoded)
                elif len(window.placements) > 1:
                    redo.extend(p for p, _ in window.placements)
                else:
                    retry.append((window, audio))
            self.stats.count(passes=1, windows=len(chunk))
            for temperature in TEMPERATURES:
                if not retry:
                    break
                sampled = backend.decode_sampled(np.stack([a for _, a in retry]), tokenizer, temperature)
                self.stats.count(passes=1, sampled_windows=len(retry))
                still = []
                for (window, audio), decoded in zip(retry, sampled, strict=True):
                    if _acceptable(decoded, self._text(tokenizer, decoded)) or temperature == TEMPERATURES[-1]:
                        accept(window, decoded)
                    else:
                        still.append((window, audio))
                retry = still
            self.stats.count(decode_seconds=time.monotonic() - started)
            progress.done([p for w in chunk for p, _ in w.placements])
        self.stats.count(pieces_again=len(redo))
        return redo

    @staticmethod
    def _text(tokenizer: Tokenizer, decoded: Decoded) -> str:
        return tokenizer.decode([t for t in decoded.tokens if t < tokenizer.eot])

    @staticmethod
    def _assemble(
        audio: np.ndarray,
        found_pieces: list[tuple[Piece, _PieceText]],
        language: str,
        options: TranscribeOptions,
    ) -> Transcript:
        segments: list[Segment] = []
        duration = audio.size / SAMPLE_RATE
        for piece, found in found_pieces:
            base = piece.start / SAMPLE_RATE
            for start, end, text, decoded, temperature in found.spans:
                if _silent(decoded) or not text.strip():
                    continue
                segments.append(
                    Segment(
                        id=len(segments),
                        start=round(base + start, 3),
                        end=round(min(duration, base + max(end, start)), 3),
                        text=text,
                        avg_logprob=decoded.avg_logprob,
                        no_speech_prob=decoded.no_speech_prob,
                        compression_ratio=round(compression_ratio(text), 3),
                        temperature=temperature,
                    )
                )
        return Transcript(
            text="".join(s.text for s in segments).strip(),
            language=language,
            duration=round(duration, 3),
            segments=segments,
            task=options.task,
        )


class _Preloader:
    """``ModelCache``'s ``loaded``/``get`` as the runner uses them, loading the backend a batch will need."""

    def __init__(self, engine: BatchedEngine) -> None:
        self._engine = engine

    @property
    def device(self) -> str:
        return self._engine.reference.models.device

    def loaded(self, name: str) -> bool:
        return name in self._engine._backends

    def get(self, name: str) -> Backend:
        return self._engine._backend(name)


class _Progress:
    """Per-job percent of audio decoded, reported after each forward pass."""

    def __init__(self, audios: list[np.ndarray], hooks: list[PercentHook | None]) -> None:
        self._totals = [max(1, a.size) for a in audios]
        self._done = [0] * len(audios)
        self._hooks = hooks
        for job in range(len(audios)):
            self._report(job, 0.0)

    def _report(self, job: int, percent: float) -> None:
        hook = self._hooks[job] if job < len(self._hooks) else None
        if hook is not None:
            try:
                hook(percent)
            except Exception:  # progress is advisory
                logger.exception("progress hook failed")

    def done(self, pieces: list[Piece]) -> None:
        touched = set()
        for piece in pieces:
            self._done[piece.job] += piece.samples
            touched.add(piece.job)
        for job in touched:
            self._report(job, min(100.0, 100.0 * self._done[job] / self._totals[job]))
