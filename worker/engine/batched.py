"""The batched engine: windows from many jobs in one forward pass, results split back per job.

Each job's audio is cut at pauses into pieces of at most 28 s (``windows``); short pieces from any job share a
window, separated by silence. A pass encodes a batch of windows and decodes greedily with timestamps; a shared
window's pieces are kept apart in the encoder and get a decoder row each (``isolate``), so each reads as if
alone, and ``splitback`` puts each piece's text on its own timeline. What a pass could not settle (a piece to
decode alone, a window to sample again at a higher temperature) goes back in the queue and rides in a later pass
beside newer work; the rest of a piece (speech the decoder deferred, passed over or never reached) is packed like
a new piece, ahead of the new ones.

One model thread runs the passes. Calls from several threads (one per message in progress) put their audio in
its queue and wait; each pass takes the oldest unfinished work first and fills up with new pieces, so a job
never waits for another job's fallbacks to finish a batch of their own. Word timings are found once a job's
transcript is assembled: its segments are aligned against its audio in a forward pass of their own (``words``).
Options that need the reference loop (beam search, an initial prompt) go through the ``ReferenceEngine``
unchanged.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np
import torch
from whisper.tokenizer import Tokenizer

from worker.audio import SAMPLE_RATE
from worker.audio.speech import Speech
from worker.engine import PercentHook
from worker.engine.backends import Backend
from worker.engine.gating import seed_of, speech_of, speech_of_each
from worker.engine.greedy import Generated
from worker.engine.options import Cancelled, TranscribeOptions, check_options
from worker.engine.reference import ReferenceEngine
from worker.engine.splitback import (
    LOGPROB_LIMIT,
    NO_SPEECH_LIMIT,
    TEMPERATURES,
    PieceText,
    Split,
    acceptable,
    compression_ratio,
    reads_well,
    silent,
)
from worker.engine.windows import WINDOW_SAMPLES, Piece, Window, pack, pieces_of
from worker.engine.words import with_words
from worker.errors import EngineFailed, EngineTimeout, JobError, ResourceExhausted
from worker.ops.logs import logger
from worker.transcript import Segment, Transcript

# Messages started together reach the engine a few milliseconds apart: a short wait lets them share a pass.
LINGER_SECONDS = 0.05
# A new piece alone in its window is decoded apart up to this long: its encoder work is at most about half a window.
APART_MAX_SAMPLES = 15 * SAMPLE_RATE
# How often a waiting caller wakes to look at its deadline and at the pass in progress.
WATCH_SECONDS = 5.0
# One pass decodes at most 224 steps for each of its windows; far longer than that means a stuck device or kernel.
STUCK_PASS_SECONDS = 300.0

BackendFor = Callable[[str], Backend]
Key = tuple[str, str, str]  # model, language, task: what one pass must share


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
    hooks: list[PercentHook | None]
    speech: list[Speech | None]  # per audio: where it speaks, or None to decode all of it
    future: Future = field(default_factory=Future)
    transcripts: list[Transcript | None] = field(default_factory=list)
    left: int = 0


@dataclass
class _Job:
    """One audio of a request, while its pieces are being decoded."""

    request: _Request
    index: int
    language: str
    pieces: set[Piece] = field(default_factory=set)  # not decoded yet
    texts: dict[Piece, PieceText] = field(default_factory=dict)
    done_samples: int = 0
    total_samples: int = 1  # of the pieces planned: the speech found, or the whole audio


@dataclass
class _Task:
    """A window to decode: at temperature 0 first, then up the ladder while its text fails the checks."""

    window: Window
    step: int = 0  # 0: greedy; n: TEMPERATURES[n - 1]
    fresh: bool = False  # packed from the lane's new pieces and rests: a short one alone is decoded apart too


@dataclass
class _Lane:
    """Work for one (model, language, task): tasks ready to run and pieces still to pack."""

    tasks: deque[_Task] = field(default_factory=deque)
    fresh: list[Piece] = field(default_factory=list)


class BatchedEngine:
    """An ``Engine`` that batches across calls; thread-safe."""

    def __init__(
        self,
        reference: ReferenceEngine,
        backend_for: BackendFor,
        *,
        name: str = "batched",
        pack_windows: bool = True,
        deadline_base_seconds: float = 600.0,
        deadline_factor: float = 4.0,
    ) -> None:
        self.name = name
        self._deadline_base = deadline_base_seconds
        self._deadline_factor = deadline_factor
        self._pass_started: float | None = None  # set by the model thread while a pass runs
        self._stuck_reported: float | None = None
        self.reference = reference
        self._backend_for = backend_for
        self._backends: dict[str, Backend] = {}
        self._backends_lock = threading.Lock()
        self._pack = pack_windows
        self.models = _Preloader(self)  # the runner preloads the default model through this
        self.stats = EngineStats()
        self._incoming: list[_Request] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        # the model thread's own state
        self._jobs: dict[int, _Job] = {}
        self._lanes: dict[Key, _Lane] = defaultdict(_Lane)
        self._ids = itertools.count()

    # --- public interface -------------------------------------------------------------------------
    def transcribe(
        self,
        model_name: str,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: PercentHook | None = None,
        cancel: threading.Event | None = None,
    ) -> Transcript:
        if not self.batchable(options):
            return self.reference.transcribe(model_name, audio, options, progress=progress, cancel=cancel)
        # the detector runs here, in the caller's thread: the model thread only decodes
        speech = [speech_of(audio, options)]
        return self._submit(_Request(model_name, [audio], options, [progress], speech), cancel)[0]

    def transcribe_many(
        self, model_name: str, audios: list[np.ndarray], options: TranscribeOptions
    ) -> list[Transcript]:
        """Transcribe several audios in one batch; for callers that already hold many (benchmarks, backfills)."""
        if not self.batchable(options):
            return [self.reference.transcribe(model_name, audio, options) for audio in audios]
        speech = speech_of_each(list(audios), options)
        return self._submit(_Request(model_name, list(audios), options, [None] * len(audios), speech))

    @staticmethod
    def batchable(options: TranscribeOptions) -> bool:
        return not (options.beam_size or options.initial_prompt)

    def check(self, model_name: str, options: TranscribeOptions) -> None:
        """Load the model's backend if needed and refuse options it cannot serve (``InvalidMessage``)."""
        if not self.batchable(options):
            self.reference.check(model_name, options)
            return
        backend = self._backend(model_name)
        check_options(model_name, backend.multilingual, backend.num_languages, options)

    def _submit(self, request: _Request, cancel: threading.Event | None = None) -> list[Transcript]:
        for hook in request.hooks:
            if hook is not None:
                _call(hook, 0.0)
        with self._wake:
            self._incoming.append(request)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="batched-engine", daemon=True)
                self._thread.start()
            self._wake.notify()
        return self._wait(request, cancel)

    def _wait(self, request: _Request, cancel: threading.Event | None = None) -> list[Transcript]:
        """The request's transcripts, or its error; never longer than its deadline (base + factor x audio). A
        cancelled request ends at once: settling its future makes the model thread drop its queued windows."""
        seconds = sum(a.size for a in request.audios) / SAMPLE_RATE
        allowed = self._deadline_base + self._deadline_factor * seconds
        deadline = time.monotonic() + allowed
        while True:
            try:
                return request.future.result(timeout=max(0.0, min(WATCH_SECONDS, deadline - time.monotonic())))
            except FutureTimeout:
                self._watch_pass()
                if cancel is not None and cancel.is_set():
                    if _settle_future(request.future, error=Cancelled("the job was handed back")):
                        with self._wake:
                            self._wake.notify()
                    return request.future.result()
                if time.monotonic() >= deadline:
                    error = EngineTimeout(f"the engine did not finish {seconds:.0f} s of audio within {allowed:.0f} s")
                    if _settle_future(request.future, error=error):  # the model thread drops its work
                        with self._wake:
                            self._wake.notify()
                    return request.future.result()

    def _watch_pass(self) -> None:
        """Log a pass that runs far longer than any pass should, once per pass."""
        started = self._pass_started
        if started is None or time.monotonic() - started < STUCK_PASS_SECONDS or self._stuck_reported == started:
            return
        self._stuck_reported = started
        logger.error(
            "engine pass is stuck",
            extra={"engine": self.name, "pass_seconds": round(time.monotonic() - started, 1)},
        )

    def _backend(self, model_name: str) -> Backend:
        with self._backends_lock:
            if model_name not in self._backends:
                self._backends[model_name] = self._backend_for(model_name)
            return self._backends[model_name]

    # --- the model thread -------------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            self._serve_forever()
        except BaseException as exc:  # the loop itself broke: no waiting job may be left behind
            logger.exception("engine model thread died; failing its jobs", extra={"engine": self.name})
            self._fail_everything(EngineFailed(f"the engine's model thread died: {type(exc).__name__}: {exc}"))

    def _serve_forever(self) -> None:
        while True:
            with self._wake:
                while not self._incoming and not self._jobs:
                    self._wake.wait()
                if not self._jobs:  # idle until now: give the first request's companions a moment
                    self._wake.wait(LINGER_SECONDS)
                arrived, self._incoming = self._incoming, []
            for request in arrived:
                self._admit(request)
            self._drop_abandoned()
            busy = [k for k, lane in self._lanes.items() if lane.tasks or lane.fresh]
            for key in busy:
                self._pass_started = time.monotonic()
                try:
                    self._pass(key)
                finally:
                    self._pass_started = None
            if not busy and self._jobs:  # cannot happen; fail loudly rather than spin on work that is gone
                for job_id in list(self._jobs):
                    self._fail_job(job_id, EngineFailed("internal error: a job's audio left the engine's queue"))

    def _fail_everything(self, error: JobError) -> None:
        """Fail every request the engine holds or was handed; the next request starts a new model thread."""
        with self._wake:
            arrived, self._incoming = self._incoming, []
            self._thread = None  # under the lock: a request arriving now starts a fresh thread
        requests = [job.request for job in self._jobs.values()] + arrived
        self._jobs.clear()
        self._lanes.clear()
        for request in requests:
            _settle_future(request.future, error=error)

    def _drop_abandoned(self) -> None:
        """Forget jobs whose request already ended (a sibling failed, or its caller's deadline passed), and the
        queued work that belongs to them."""
        for job_id in [i for i, job in self._jobs.items() if job.request.future.done()]:
            del self._jobs[job_id]
        for key, lane in list(self._lanes.items()):
            lane.fresh = [p for p in lane.fresh if p.job in self._jobs]
            lane.tasks = deque(t for t in (self._live(task) for task in lane.tasks) if t is not None)
            if not lane.tasks and not lane.fresh:
                del self._lanes[key]

    def _admit(self, request: _Request) -> None:
        request.transcripts = [None] * len(request.audios)
        request.left = len(request.audios)
        if not request.audios:  # nothing to wait for: no job would ever settle it
            _settle_future(request.future, result=[])
            return
        try:
            backend = self._backend(request.model)
            check_options(request.model, backend.multilingual, backend.num_languages, request.options)
            languages = self._languages(backend, request)
            planned = [
                (lang, _planned(audio, speech))
                for audio, speech, lang in zip(request.audios, request.speech, languages, strict=True)
            ]
        except Exception as exc:
            _settle_future(request.future, error=_engine_error(exc))
            return
        for index, (language, pieces) in enumerate(planned):
            job_id = next(self._ids)
            job = _Job(request, index, language)
            self._jobs[job_id] = job
            pieces = [Piece(job_id, p.start, p.end) for p in pieces]
            job.pieces.update(pieces)
            job.total_samples = max(1, sum(p.samples for p in pieces))
            self._lanes[(request.model, language, request.options.task)].fresh.extend(pieces)
            if not pieces:
                self._finish(job_id)

    def _languages(self, backend: Backend, request: _Request) -> list[str]:
        if not backend.multilingual:
            return ["en"] * len(request.audios)
        if request.options.language:
            return [request.options.language] * len(request.audios)
        # the first 28 s of speech (with detection on, from where it starts); a recording without any is "en"
        heard = [i for i, speech in enumerate(request.speech) if speech is None or speech.regions]
        found = ["en"] * len(request.audios)
        if not heard:
            return found
        starts = [s.regions[0][0] if (s := request.speech[i]) is not None else 0 for i in heard]
        firsts = [request.audios[i][at : at + int(28 * SAMPLE_RATE)] for i, at in zip(heard, starts, strict=True)]
        detected = backend.detect_language(
            np.stack([Window([(Piece(i, 0, f.size), 0)]).audio(firsts) for i, f in enumerate(firsts)])
        )
        for i, language in zip(heard, detected, strict=True):
            found[i] = language
        return found

    def _pass(self, key: Key) -> None:
        """One forward pass for ``key``: the oldest unfinished tasks first, then new pieces packed into windows.
        Whatever raises fails only the jobs of this pass; the rest of the lane goes on in later passes."""
        chosen: list[_Task] = []
        started = time.monotonic()
        try:
            model, language, task = key
            lane = self._lanes[key]
            backend = self._backend(model)
            chosen = self._choose(lane, max(1, backend.batch_windows))
            tokenizer = backend.tokenizer(language, task)
            for step in sorted({t.step for t in chosen}):
                group = [t for t in chosen if t.step == step]
                try:
                    self._generate(backend, tokenizer, lane, group, step)
                except Exception as exc:  # this group's jobs only: the other groups of the pass go on
                    self._fail_tasks(group, _engine_error(exc))
        except Exception as exc:  # planning or the tokenizer: the whole pass, or the lane when nothing was taken
            error = _engine_error(exc)
            self._fail_tasks(chosen, error)
            if not chosen:
                self._fail_lane(key, error)
        finally:
            self.stats.count(generate_seconds=time.monotonic() - started)

    def _choose(self, lane: _Lane, size: int) -> list[_Task]:
        chosen = [lane.tasks.popleft() for _ in range(min(size, len(lane.tasks)))]
        room = size - len(chosen)
        if room and lane.fresh:
            # Oldest pieces first, one decoder row each (a shared window decodes a row per piece): a stream of
            # new long files cannot starve an older short clip, which packing alone (largest first) would allow.
            candidates, later = lane.fresh[:room], lane.fresh[room:]
            windows = pack(candidates) if self._pack else [Window([(p, 0)]) for p in candidates]
            chosen.extend(_Task(w, fresh=True) for w in windows[:room])
            lane.fresh = [p for w in windows[room:] for p, _ in w.placements] + later
        return chosen

    def _fail_tasks(self, tasks: list[_Task], error: JobError) -> None:
        logger.error("engine pass failed", extra={"engine": self.name, "error": error.message})
        for job_id in {p.job for t in tasks for p, _ in t.window.placements}:
            self._fail_job(job_id, error)

    def _generate(
        self, backend: Backend, tokenizer: Tokenizer, lane: _Lane, tasks: list[_Task], step: int, *, retry: bool = True
    ) -> None:
        tasks = [t for t in (self._live(t) for t in tasks) if t is not None]  # an earlier group may have failed some
        if not tasks:
            return
        audios = {job_id: job.request.audios[job.index] for job_id, job in self._jobs.items()}
        batch = np.stack([t.window.audio(audios) for t in tasks])
        try:
            if step == 0:
                shared = [t.window if _apart(t) else None for t in tasks]
                rows = backend.generate(batch, tokenizer, shared if any(shared) else None)
                results = _per_window(tasks, rows)
            else:
                # drawn from the windows' own audio: the same windows sample the same text, whatever job or run
                # (on backends that take a seed: torch does, CTranslate2 cannot be seeded per call)
                seed = seed_of(batch, step)
                results = backend.generate_sampled(batch, tokenizer, TEMPERATURES[step - 1], seed)
        except Exception as exc:
            # One window or piece may be the cause (or the batch was too big): each alone finds out which jobs the
            # failure belongs to, and the others go on.
            units = tasks if len(tasks) > 1 else [_Task(Window([(p, 0)]), step) for p, _ in tasks[0].window.placements]
            if len(units) == 1:
                if not retry:
                    raise
                # One piece alone: a fault that passes (a device hiccup) gets a second try, poison fails twice.
                logger.warning("engine pass failed; trying its one piece again", extra={"engine": self.name})
                self._generate(backend, tokenizer, lane, units, step, retry=False)
                return
            logger.warning(
                "engine pass failed; decoding its parts one by one",
                extra={"engine": self.name, "parts": len(units), "error": str(_engine_error(exc))},
            )
            for unit in units:
                try:
                    self._generate(backend, tokenizer, lane, [unit], step)
                except Exception as alone:
                    self._fail_tasks([unit], _engine_error(alone))
            return
        self.stats.count(passes=1, windows=len(tasks), sampled_windows=len(tasks) if step else 0)
        doubtful: list[tuple[_Task, Generated]] = []
        for task, decoded in zip(tasks, results, strict=True):
            if isinstance(decoded, list):
                self._settle_pieces(task.window, decoded, tokenizer, lane)
                continue
            try:
                text = tokenizer.decode([t for t in decoded.tokens if t < tokenizer.eot])
                last = step == len(TEMPERATURES)
                if acceptable(decoded, text) or last:
                    self._settle(*task.window.placements[0], decoded, tokenizer, lane)
                    continue
            except Exception as exc:
                self._unsettled(task.window.placements[0][0].job, exc, "engine could not settle a window")
                continue
            if step == 0 and decoded.avg_logprob < LOGPROB_LIMIT:
                doubtful.append((task, decoded))
                continue
            lane.tasks.append(_Task(task.window, step + 1))
        if doubtful:
            self._judge_as_heard(backend, tokenizer, lane, doubtful)

    def _judge_as_heard(
        self, backend: Backend, tokenizer: Tokenizer, lane: _Lane, doubtful: list[tuple[_Task, Generated]]
    ) -> None:
        """Whisper's no-speech rule for pieces whose greedy text is improbable, judged on the window
        ``transcribe()`` would have seen: the recording's next 30 s from the piece's start. A piece's own window
        ends in silence after it (``windows``), and that silence reads to Whisper as a sound stopping: on noise,
        hum or music the no-speech probability falls below the rule's bar (chords: 0.31 against 0.70), and the
        temperature ladder then samples words out of the noise. Those judged silent settle as silence; the rest go
        up the ladder."""
        audios = {job_id: job.request.audios[job.index] for job_id, job in self._jobs.items()}
        natural = np.zeros((len(doubtful), WINDOW_SAMPLES), dtype=np.float32)
        for row, (task, _) in enumerate(doubtful):
            piece = task.window.placements[0][0]
            audio = audios.get(piece.job)
            if audio is not None:
                seen = audio[piece.start : piece.start + WINDOW_SAMPLES]
                natural[row, : seen.size] = seen
        try:
            judged = backend.generate(natural, tokenizer)
        except Exception:  # a second opinion only: without it, the ladder decides as before
            logger.warning("engine could not judge doubtful windows", extra={"engine": self.name}, exc_info=True)
            judged = [Generated([], 0.0, 0.0)] * len(doubtful)
        self.stats.count(judged_windows=len(doubtful))
        for (task, decoded), seen in zip(doubtful, judged, strict=True):
            if seen.no_speech_prob > NO_SPEECH_LIMIT:
                quiet = Generated(decoded.tokens, decoded.avg_logprob, seen.no_speech_prob, decoded.temperature)
                try:
                    self._settle(*task.window.placements[0], quiet, tokenizer, lane)
                except Exception as exc:
                    self._unsettled(task.window.placements[0][0].job, exc, "engine could not settle a window")
            else:
                lane.tasks.append(_Task(task.window, 1))

    def _settle_pieces(self, window: Window, rows: list[Generated], tokenizer: Tokenizer, lane: _Lane) -> None:
        """A shared window decoded a row per piece. A row whose text passes ``transcribe()``'s checks settles its
        piece. Any other row (it reads nothing, reads wrong, or says no speech) is not trusted to speak for the
        piece alone: the piece is decoded again alone, greedily, and judged there as ``transcribe()`` would judge
        it. A row's no-speech probability is not the piece's: beside other pieces, noisy speech read at 0.85-0.93
        that read 0.1-0.4 alone, which would have kept words that needed a fallback or dropped speech as silence.
        So neither silence nor the sampled fallbacks are decided by the pieces packed beside it."""
        for (piece, offset), decoded in zip(window.placements, rows, strict=True):
            if piece.job not in self._jobs:
                continue
            try:
                text = tokenizer.decode([t for t in decoded.tokens if t < tokenizer.eot])
                if text.strip() and reads_well(decoded, text):
                    self._settle(piece, offset, decoded, tokenizer, lane)
                    continue
            except Exception as exc:
                self._unsettled(piece.job, exc, "engine could not settle a piece")
                continue
            lane.tasks.append(_Task(Window([(piece, 0)])))
            self.stats.count(pieces_again=1)

    def _unsettled(self, job_id: str, exc: Exception, message: str) -> None:
        """Text that could not be split back fails only its own job."""
        error = _engine_error(exc)
        logger.error(message, extra={"engine": self.name, "error": error.message})
        self._fail_job(job_id, error)

    def _live(self, task: _Task) -> _Task | None:
        """The task without the pieces of jobs that already ended; None when none is left."""
        live = [(p, offset) for p, offset in task.window.placements if p.job in self._jobs]
        if len(live) == len(task.window.placements):
            return task
        return _Task(Window(live), task.step, task.fresh) if live else None

    def _settle(self, piece: Piece, offset: int, decoded: Generated, tokenizer: Tokenizer, lane: _Lane) -> None:
        job = self._jobs.get(piece.job)
        if job is None:
            return
        text, rests = Split(piece, offset, decoded, tokenizer, self._samples).run()
        job.texts[piece] = text
        job.pieces.discard(piece)
        job.done_samples += piece.samples
        for rest in reversed(rests):
            job.pieces.add(rest)
            lane.fresh.insert(0, rest)  # packed like new pieces, ahead of them: it belongs to older work
            self.stats.count(pieces_again=1)
        _report(job.request.hooks[job.index], min(100.0, 100.0 * job.done_samples / job.total_samples))
        if not job.pieces:
            self._finish(piece.job)

    def _samples(self, piece: Piece) -> np.ndarray:
        job = self._jobs.get(piece.job)
        if job is None:
            return np.zeros(0, dtype=np.float32)
        return job.request.audios[job.index][piece.start : piece.end]

    def _finish(self, job_id: int) -> None:
        job = self._jobs.pop(job_id)
        request = job.request
        audio = request.audios[job.index]
        ordered = sorted(job.texts.items(), key=lambda item: item[0].start)
        transcript = _assemble(audio, ordered, job.language, request.options)
        if request.options.word_timestamps and transcript.segments:
            try:
                transcript = self._with_words(request.model, transcript, audio, job.language, request.options.task)
            except Exception as exc:  # this job only: the job is out of the queue, so its future is settled here
                logger.error("engine could not align words", extra={"engine": self.name}, exc_info=True)
                _settle_future(request.future, error=_engine_error(exc))
                return
        speech = request.speech[job.index]
        if speech is not None:
            transcript.speech_seconds = speech.seconds
        request.transcripts[job.index] = transcript
        request.left -= 1
        if request.left == 0:
            _settle_future(request.future, result=request.transcripts)

    def _with_words(
        self, model: str, transcript: Transcript, audio: np.ndarray, language: str, task: str
    ) -> Transcript:
        started = time.monotonic()
        backend = self._backend(model)
        transcript = with_words(transcript, audio, backend, backend.tokenizer(language, task))
        self.stats.count(aligned_jobs=1, align_seconds=time.monotonic() - started)
        return transcript

    def _fail_lane(self, key: Key, exc: BaseException) -> None:
        """A lane that cannot be served fails every request with work in it; other lanes go on."""
        lane = self._lanes.pop(key, None) or _Lane()
        job_ids = {p.job for t in lane.tasks for p, _ in t.window.placements} | {p.job for p in lane.fresh}
        job_ids |= {i for i, job in self._jobs.items() if _key(job) == key}
        for job_id in job_ids:
            self._fail_job(job_id, exc)

    def _fail_job(self, job_id: int, exc: BaseException) -> None:
        job = self._jobs.pop(job_id, None)
        if job is not None:
            _settle_future(job.request.future, error=exc)


def _planned(audio: np.ndarray, speech: Speech | None) -> list[Piece]:
    """The pieces to decode: all of ``audio``, or each speech region cut at its pauses; offsets in ``audio``."""
    if speech is None:
        return pieces_of(-1, audio)
    return [
        Piece(-1, start + p.start, start + p.end)
        for start, end in speech.regions
        for p in pieces_of(-1, audio[start:end])
    ]


def _apart(task: _Task) -> bool:
    """Whether the window is decoded a row per piece: it holds several, or one not at its start, or one new short
    piece, which a row then reads from the encoder's output over the piece and the silence after it alone (CPU
    encodes nothing past that), not over a whole window. A piece decoded again alone for a second opinion (its
    row heard nothing), and long pieces, for which that would save nothing, are decoded whole."""
    (piece, offset), *others = task.window.placements
    return bool(others) or offset != 0 or (task.fresh and piece.samples <= APART_MAX_SAMPLES)


def _per_window(tasks: list[_Task], rows: list[Generated]) -> list[Generated | list[Generated]]:
    """The backend's rows regrouped: one result for a window decoded whole, a list (a row per piece) for a
    shared one."""
    grouped: list[Generated | list[Generated]] = []
    at = 0
    for task in tasks:
        if _apart(task):
            count = len(task.window.placements)
            grouped.append(rows[at : at + count])
            at += count
        else:
            grouped.append(rows[at])
            at += 1
    if at != len(rows):
        raise EngineFailed(f"the backend returned {len(rows)} rows for {at}")
    return grouped


def _settle_future(future: Future, *, result: object = None, error: BaseException | None = None) -> bool:
    """Set a request's outcome unless it has one already (the waiter's deadline and the model thread may race)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        return False
    return True


def _engine_error(exc: BaseException) -> JobError:
    """What a job sees when the engine raised: our own errors as they are, anything else a transient failure."""
    if isinstance(exc, JobError):
        return exc
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
        return ResourceExhausted(f"GPU out of memory: {exc}")
    return EngineFailed(f"engine error: {type(exc).__name__}: {exc}")


# Progress hooks write status.json to S3: one thread of their own keeps the model thread off the network,
# and keeps each job's updates in order.
_HOOKS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-progress")


def _key(job: _Job) -> Key:
    return job.request.model, job.language, job.request.options.task


def _report(hook: PercentHook | None, percent: float) -> None:
    if hook is not None:
        _HOOKS.submit(_call, hook, percent)


def _call(hook: PercentHook, percent: float) -> None:
    try:
        hook(percent)
    except Exception:  # progress is advisory
        logger.exception("progress hook failed")


def _assemble(
    audio: np.ndarray, found_pieces: list[tuple[Piece, PieceText]], language: str, options: TranscribeOptions
) -> Transcript:
    segments: list[Segment] = []
    duration = audio.size / SAMPLE_RATE
    for piece, found in found_pieces:
        base = piece.start / SAMPLE_RATE
        for start, end, text, decoded in found.spans:
            if silent(decoded) or not text.strip():
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
                    temperature=decoded.temperature,
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
