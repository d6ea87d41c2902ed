"""The benchmark's own parts, fast: corpus manifests, WER, the table, and the WAVs it writes. No Whisper runs."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from bench import corpus, report, run, systems, worker_system
from bench.report import Summary, add_ratios, format_report, format_table, summarise
from bench.wer import corpus_wer, normalise
from tests.support.audio_factory import JFK, tone
from tests.support.samples import JFK_TEXT
from worker.audio import SAMPLE_RATE
from worker.audio.decode import _decode_with_pyav, decode_audio
from worker.audio.wav import write_wav

# ---------------------------------------------------------------------------------------------- corpus


@pytest.fixture
def user_corpus(tmp_path: Path) -> Path:
    root = tmp_path / "talks"
    (root / "diarization").mkdir(parents=True)
    write_wav(root / "hello.wav", tone(220.0, 1.5, SAMPLE_RATE))
    (root / "hello.txt").write_text("Hello there.\n")
    write_wav(root / "keynote.wav", tone(330.0, 61.0, SAMPLE_RATE, amplitude=0.1))
    (root / "keynote.txt").write_text("A long talk.")
    # A subfolder holds other data (multi-speaker recordings, their RTTM and joined text): not corpus items.
    write_wav(root / "diarization" / "meeting.wav", tone(250.0, 2.0, SAMPLE_RATE))
    (root / "diarization" / "meeting.txt").write_text("Not in time order.")
    (root / "diarization" / "meeting.rttm").write_text("SPEAKER meeting 1 0.00 2.00 <NA> <NA> A <NA> <NA>\n")
    (root / "hello.rttm").write_text("SPEAKER hello 1 0.00 1.50 <NA> <NA> A <NA> <NA>\n")  # not audio
    shutil.copyfile(JFK, root / "jfk.flac")
    (root / "jfk.txt").write_text("And so my fellow Americans")
    write_wav(root / "no-reference.wav", tone(440.0, 0.5, SAMPLE_RATE))  # no .txt: not part of the corpus
    return root


def test_user_directory_becomes_a_corpus(user_corpus: Path) -> None:
    found = corpus.from_directory(user_corpus)
    by_name = {item.name: item for item in found.items}
    assert sorted(by_name) == ["hello", "jfk", "keynote"]
    assert by_name["hello"].text == "Hello there."
    assert by_name["hello"].seconds == pytest.approx(1.5)
    assert by_name["hello"].kind == "clip"
    assert by_name["keynote"].kind == "long"  # over 60 s
    assert by_name["jfk"].seconds == pytest.approx(11.0, abs=0.1)  # not a WAV: measured by decoding
    assert found.seconds == pytest.approx(1.5 + 61.0 + 11.0, abs=0.2)


def test_manifest_round_trip_and_is_preferred(user_corpus: Path) -> None:
    found = corpus.from_directory(user_corpus)
    path = corpus.write_manifest(found.root, list(found.items), "abc123")
    assert '"audio": "keynote.wav"' in path.read_text()  # relative: the directory can move
    again, fingerprint = corpus.read_manifest(found.root)
    assert fingerprint == "abc123"
    assert again.items == found.items
    # With a manifest present, the directory is read from it (a subset here), not scanned.
    corpus.write_manifest(found.root, list(found.items[:1]))
    assert len(corpus.from_directory(user_corpus).items) == 1


def test_joined_corpus_is_one_long_recording_of_every_file_in_order(user_corpus: Path, tmp_path: Path) -> None:
    found = corpus.from_directory(user_corpus)
    cache = tmp_path / "joined"
    (long,) = corpus.joined(found, cache).items
    assert long.kind == "long" and long.text == "Hello there. And so my fellow Americans A long talk."
    pauses = sum(corpus.PAUSES[n % len(corpus.PAUSES)] for n in (1, 2))
    assert long.seconds == pytest.approx(found.seconds + pauses, abs=0.2)
    audio = decode_audio(long.audio, max_seconds=600)
    hello = int(1.5 * SAMPLE_RATE)
    gap = audio[hello + 800 : hello + int(corpus.PAUSES[1] * SAMPLE_RATE) - 800]
    assert np.abs(audio[:hello]).max() > 0.1 and np.abs(gap).max() == 0  # the first file, then its pause
    written = long.audio.stat().st_mtime_ns
    assert corpus.joined(found, cache).items[0].audio.stat().st_mtime_ns == written  # built once, then reused


def test_empty_directory_is_refused(tmp_path: Path) -> None:
    write_wav(tmp_path / "orphan.wav", tone(440.0, 0.5, SAMPLE_RATE))
    with pytest.raises(corpus.CorpusError, match=r"same-named \.txt"):
        corpus.from_directory(tmp_path)


def test_clip_plan_is_deterministic_and_varied() -> None:
    plan = corpus.clip_plan()
    assert plan == corpus.clip_plan()
    assert len(plan) >= 35
    assert len({voice for _, _, voice, _, _ in plan}) >= 8
    assert {speed for *_, speed, _ in plan} <= set(range(140, 191))
    assert len({name for name, *_ in plan}) == len(plan)
    assert corpus.fingerprint("espeak 1") == corpus.fingerprint("espeak 1") != corpus.fingerprint("espeak 2")


def test_sentences_split_at_sentence_ends() -> None:
    assert corpus.sentences("Fellow countrymen: At this time. All dreaded it, all sought it! Why? And") == [
        "Fellow countrymen:",
        "At this time.",
        "All dreaded it, all sought it!",
        "Why?",
        "And",
    ]


def test_corpus_wavs_take_the_decoders_fast_path(tmp_path: Path) -> None:
    pcm = (tone(300.0, 2.0, SAMPLE_RATE) * 32767).astype(np.int16)
    path = tmp_path / "clip.wav"
    assert corpus._saved_seconds(path, pcm) == 2.0
    fast = decode_audio(path, max_seconds=60)
    np.testing.assert_array_equal(fast, _decode_with_pyav(path, 60 * SAMPLE_RATE, 60))
    np.testing.assert_array_equal(fast, pcm.astype(np.float32) / 32768.0)


def test_speak_gives_16khz_speech() -> None:
    pcm = corpus.speak("Slow and steady wins the race.", "en-us", 160, 50)
    assert pcm.dtype == np.int16
    assert 1.0 < pcm.size / SAMPLE_RATE < 4.0
    assert np.abs(pcm).max() > 1000


def test_default_corpus_is_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus.texts, "CLIPS", [("aesop", "Slow and steady."), ("franklin", "Well done.")])
    monkeypatch.setattr(corpus.texts, "LONG_PARAGRAPHS", ["One. Two.", "Three."])
    logged: list[str] = []
    built = corpus.build_default(tmp_path, log=logged.append)
    assert [(i.name, i.kind) for i in built.items] == [
        ("clip-01-aesop", "clip"),
        ("clip-02-franklin", "clip"),
        ("jfk", "clip"),
        ("second-inaugural", "long"),
    ]
    assert built.items[-1].text == "One. Two. Three."
    # sentences, two pauses between them and a longer one between paragraphs
    pauses = corpus.PAUSES[0] + corpus.PARAGRAPH_PAUSE + corpus.PAUSES[1]
    assert built.items[-1].seconds > pauses + 1.0
    for item in built.items[:2]:
        assert decode_audio(item.audio, max_seconds=60).size / SAMPLE_RATE == pytest.approx(item.seconds, abs=1e-3)
    assert logged
    logged.clear()
    assert corpus.build_default(tmp_path, log=logged.append) == built
    assert not logged  # same fingerprint: reused, not rebuilt


def test_missing_espeak_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus.shutil, "which", lambda name: None)
    with pytest.raises(corpus.CorpusError, match="apt-get install espeak-ng"):
        corpus.espeak_version()


# ---------------------------------------------------------------------------------------------- WER


def test_normalise_ignores_case_punctuation_and_spelling() -> None:
    assert normalise("Mr. Bennet's COLOUR, humour!") == normalise("mister bennet's color humor")


def test_wer_is_over_all_words_not_a_mean_of_files() -> None:
    # One error in a 1-word file and none in a 9-word file: 1/10, where a mean of rates would say 0.5.
    nine = "the quick brown fox jumps over a lazy dog"
    refs, hyps = ["hello", nine], ["yellow", nine]
    assert corpus_wer(refs, hyps) == pytest.approx(0.1)


def test_wer_counts_a_missing_transcript_as_deletions_and_skips_empty_references() -> None:
    assert corpus_wer(["cats and dogs", "Um, uh."], ["", "something"]) == pytest.approx(1.0)
    assert corpus_wer(["!?"], ["x"]) is None


# ---------------------------------------------------------------------------------------------- table

ITEMS = [
    {"name": "a", "text": "the cat sat on the mat", "kind": "clip", "seconds": 10.0},
    {"name": "b", "text": "a dog ran", "kind": "clip", "seconds": 5.0},
    {"name": "speech", "text": "with malice toward none", "kind": "long", "seconds": 300.0},
]


def _outcome(texts: list[str | None], wall: float, per_item: list[float | None] | None = None, **kw) -> dict:
    errors = [None if t is not None else "unsupported: bad audio" for t in texts]
    return {
        "status": "ok",
        "texts": texts,
        "errors": errors,
        "wall_seconds": wall,
        "item_seconds": per_item or [None] * len(texts),
        "load_seconds": 1.5,
        **kw,
    }


@pytest.fixture
def summaries() -> list[Summary]:
    good = ["the cat sat on the mat", "a dog ran", "with malice toward none"]
    result = [
        summarise("reference", ITEMS, _outcome(good, 63.0, [2.0, 1.0, 60.0]), rss_mb=700.0),
        summarise("faster-whisper", ITEMS, _outcome(["the cat sat on a mat", "a dog ran", None], 21.0, [1, 1, 19])),
        summarise("faster-whisper-batched", ITEMS, {"status": "not installed", "detail": "pip install it"}),
        summarise(
            "worker",
            ITEMS,
            _outcome(good, 30.0, load_label="cold start", peak_rss_mb=900.0, load_seconds=4.7),
            rss_mb=80.0,
        ),
    ]
    add_ratios(result)
    return result


def test_summaries(summaries: list[Summary]) -> None:
    ref, fw, missing, worker = summaries
    assert ref.total.audio_seconds == 315.0
    assert ref.total.realtime == pytest.approx(5.0)
    assert ref.total.wer == 0.0
    assert ref.kinds["long"].wall_seconds == 60.0
    assert fw.vs_reference == pytest.approx(3.0)
    assert fw.total.failed == 1
    assert fw.kinds["long"].wer == 1.0  # all four words missing
    assert fw.kinds["clip"].wer == pytest.approx(1 / 9)
    assert fw.errors == ["speech: unsupported: bad audio"]
    assert missing.status == "not installed"
    assert worker.peak_rss_mb == 900.0  # the worker process's own, not the system process's
    assert worker.kinds["clip"].wall_seconds is None  # jobs overlap: no per-kind time
    one_recording = summarise("worker", ITEMS[2:], _outcome(["with malice toward none"], 20.0))
    assert one_recording.kinds["long"].wall_seconds == 20.0  # the only kind: the run's own time


def test_table_is_fixed_width(summaries: list[Summary]) -> None:
    lines = format_table(summaries).splitlines()
    # Every numeric column is right-aligned: its header and each value in it end at the same offset.
    ends, offset = [], 0
    for _, width, _ in report.COLUMNS[:-1]:
        offset += width
        ends.append(offset)
        offset += 2
    numeric = ends[1:]
    for line in lines[:1] + [line for line in lines[2:] if not line.startswith("  ") and "not installed" not in line]:
        for end in numeric:
            assert line[end - 1] != " " and not line[end : end + 2].strip(), (line, end)
    rows = {line.split("  ")[0].strip(): line for line in lines[2:] if not line.startswith("  ")}
    assert "3.00x" in rows["faster-whisper"]
    assert "1 FAILED" in rows["faster-whisper"]
    assert "not installed: pip install it" in rows["faster-whisper-batched"]
    assert "load = cold start" in rows["worker"]
    assert "4.70" in rows["worker"]
    assert sum(1 for line in lines if line.startswith("  clips")) == 3
    assert sum(1 for line in lines if line.startswith("  long")) == 3


def test_report_names_the_machine_and_the_errors(summaries: list[Summary]) -> None:
    text = format_report(summaries, "Some CPU, 2 cores, torch 2.13.0, device cpu", "corpus (3 items)")
    assert text.startswith("machine: Some CPU, 2 cores")
    assert "faster-whisper error: speech: unsupported: bad audio" in text
    assert "EnglishTextNormalizer" in text


def test_worker_runs_report_the_cpu_each_process_used(summaries: list[Summary]) -> None:
    pids = {"worker": os.getpid(), "moto": None}  # a server in the harness's own process has no pid of its own
    before = worker_system._cpu_now(pids)
    started = time.process_time()
    while time.process_time() - started < 0.3:  # work the worker's side
        pass
    split = worker_system._cpu_split(before, worker_system._cpu_now(pids), 2.0)
    assert 0.2 <= split["worker"] <= 1.0 and 0.2 <= split["harness"] <= 1.0 and "moto" not in split
    assert split["cores"] == os.cpu_count() and split["wall"] == 2.0
    worker = summaries[-1]
    costs = {"requests": 8.0, "requests_by_operation": {}, "stages_ms_mean": {}, "cpu_ms_mean": 9, "cpu_ms_median": 8}
    worker.extra["per_job"] = costs
    worker.extra["cpu_seconds"] = {"worker": 40.0, "moto": 9.0, "proxy": 2.0, "harness": 4.0, "cores": 2, "wall": 30}
    line = report.format_costs(summaries)[-1]
    expected = "worker 40.0 s, moto 9.0 s, proxy 2.0 s, harness 4.0 s, of 2 cores x 30.0 s"
    assert line == f"  CPU while the corpus ran: {expected}"
    worker.extra["engine"] = {"passes": 9.0, "windows": 20.0, "generate_seconds": 24.4, "pieces_again": 1.0}
    counters = "passes 9, windows 20, pieces_again 1"
    assert report.format_costs(summaries)[0] == f"worker, the engine's counters (warm-up included): {counters}"


def test_a_one_process_system_reports_the_cpu_it_used() -> None:
    spec = systems.Spec(system="busy", items=[{"name": "jfk", "audio": str(JFK), "kind": "clip", "seconds": 11.0}])

    def one(_: object, samples: np.ndarray) -> str:
        started = time.process_time()
        while time.process_time() - started < 0.3:  # the system's work, on the clock
            pass
        return "text"

    out = systems.measure(spec, lambda: None, one)
    cpu = out.extra["cpu_seconds"]
    assert 0.3 <= cpu["process"] <= 1.0 and cpu["cores"] == os.cpu_count() and cpu["wall"] >= 0.3
    summary = summarise("busy", [{"name": "jfk", "kind": "clip", "seconds": 11.0, "text": "text"}], vars(out))
    expected = f"of {os.cpu_count()} cores x {cpu['wall']:.1f} s"
    assert report.format_costs([summary]) == [
        f"busy: CPU while the corpus ran: process {cpu['process']:.1f} s, {expected}"
    ]


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_systems(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.parse_args([]).systems == ["reference", "faster-whisper", "faster-whisper-batched", "engine", "worker"]
    assert "reference-nocudnn" in run.parse_args(["--device", "cuda"]).systems
    assert run.parse_args(["--systems", "engine, worker"]).systems == ["engine", "worker"]
    for bad in (["--systems", "nope"], ["--systems", "reference-nocudnn"], ["--repeat", "0"]):
        with pytest.raises(SystemExit):
            run.parse_args(bad)
    assert "needs --device cuda" in capsys.readouterr().err


def test_each_precision_runs_the_systems_it_changes_side_by_side() -> None:
    args = run.parse_args(["--systems", "reference,engine,worker", "--precision", "fp32, bf16"])
    assert run.runs_of(args.systems, args.precision) == [
        ("reference", "reference", None),
        ("engine-fp32", "engine", "fp32"),
        ("engine-bf16", "engine", "bf16"),
        ("worker-fp32", "worker", "fp32"),
        ("worker-bf16", "worker", "bf16"),
    ]
    assert run.runs_of(["engine"], ["auto"]) == [("engine", "engine", "auto")]  # one precision: the usual names
    with pytest.raises(SystemExit):
        run.parse_args(["--precision", "fp16"])


def test_results_record_the_cpu_and_its_bf16_flags() -> None:
    from worker.engine.device import cpu_info

    info = run.run_metadata(run.parse_args(["--precision", "fp32,bf16"]), [])
    assert info["settings"]["precision"] == "fp32,bf16"
    here = cpu_info()
    assert info["cpu"] == {"model": here.model, "flags": here.speed_flags()}
    assert set(info["cpu"]["flags"]) == {"amx_bf16", "amx_tile", "avx512_bf16", "avx512_vnni"}


@pytest.mark.parametrize("engine", ["ctranslate2", "batched"])
def test_the_engine_profile_splits_a_pass_of_any_corpus_in_each_precision(
    engine: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import engine_profile
    from tests.support.conversation import DATA, PROMPTS

    root = tmp_path / "clips"
    root.mkdir()
    for name, text in PROMPTS.items():  # real speech with its references, as bench.run takes a corpus
        shutil.copyfile(DATA / f"{name}.flac", root / f"{name}.flac")
        (root / f"{name}.txt").write_text(text)
    monkeypatch.setenv("WHISPER_MODEL_DIR", str(model_dir))
    out = tmp_path / "profile.json"
    args = ["--corpus", str(root), "--engine", engine, "--passes", "1", "--json", str(out)]
    assert engine_profile.main(args) == 0
    body = json.loads(out.read_text())
    assert body["corpus"].endswith("(4 clips, 0 long; 25.2 s of audio)") and set(body["cpu"]["flags"]) == {
        "amx_bf16",
        "amx_tile",
        "avx512_bf16",
        "avx512_vnni",
    }
    assert [run["precision"] for run in body["runs"]] == ["fp32", "bf16"]
    for timed in body["runs"]:
        one = timed["pass"]
        assert one["rows"] == 4 and one["windows"] >= 1  # a row per clip, packed into shared windows
        assert one["seconds"]["mel"] > 0 and one["seconds"]["encoder"] > 0 and one["seconds"]["decoder"] > 0
        assert one["decoder_steps"] > 10 and timed["corpus"]["realtime"] > 0


def test_missing_package_is_not_installed_not_a_crash(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(systems.SYSTEMS, "faster-whisper", "no_such_package_here")
    outcome, rss = run.run_system(systems.Spec(system="faster-whisper", items=[]), tmp_path)
    assert outcome["status"] == "not installed"
    assert rss is None


def test_one_by_one_worker_sends_each_message_after_the_last_result(model_dir: Path, tmp_path: Path) -> None:
    from bench.worker_system import latency_summary, run_worker

    short = write_wav(tmp_path / "short.wav", decode_audio(JFK, max_seconds=60)[: 4 * SAMPLE_RATE])
    items = [
        {"name": f"clip-{i}", "audio": str(p), "kind": "clip", "seconds": 11.0 if p == JFK else 4.0}
        for i, p in enumerate((JFK, short, JFK))
    ]
    spec = systems.Spec("worker-one-by-one", items, model_dir=str(model_dir), warmup=str(short), one_by_one=True)
    outcome = run_worker(spec)
    assert outcome.errors == [None, None, None] and "fellow americans" in outcome.texts[2].lower()
    latencies = outcome.item_seconds
    assert len(latencies) == 3 and all(0 < t < 60 for t in latencies) and outcome.wall_seconds == sum(latencies)
    assert outcome.extra["latency_seconds"] == latency_summary(latencies)
    counters = outcome.extra["engine"]
    assert counters["passes"] == counters["windows"] == 4  # warm-up included: no job ever shared a pass


def test_latency_summary_takes_the_nearest_rank() -> None:
    from bench.worker_system import latency_summary

    assert latency_summary([]) == {}
    times = [float(n) for n in range(1, 21)]  # 1..20 s
    assert latency_summary(times) == {"median": 11.0, "p95": 19.0, "max": 20.0}


def test_the_hard_tier_makes_five_variants_of_each_clip_with_its_reference(tmp_path: Path) -> None:
    from bench import hard

    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(JFK, clips / "jfk.flac")
    (clips / "jfk.txt").write_text(JFK_TEXT)
    assert hard.build(clips, tmp_path / "hard") == 5
    speech = decode_audio(JFK, max_seconds=60).astype(np.float64)
    for name in ("noise0", "noise5", "quiet", "fast", "clipped"):
        made = tmp_path / "hard" / f"jfk.{name}.wav"
        assert made.with_suffix(".txt").read_text().strip() == JFK_TEXT
        audio = decode_audio(made, max_seconds=60).astype(np.float64)
        if name == "fast":
            assert abs(audio.size / speech.size - 1 / hard.TEMPO) < 0.02
            continue
        assert audio.size == speech.size
        added = audio - speech
        level = {"noise0": 0.0, "noise5": 5.0}.get(name)
        if level is not None:  # the noise sits `level` dB under the speech's own loudness
            snr = 20 * np.log10(hard._rms(speech) / np.sqrt(np.mean(added**2)))
            assert abs(snr - level) < 1.5, (name, snr)
    quiet = decode_audio(tmp_path / "hard" / "jfk.quiet.wav", max_seconds=60)
    assert 25 < 20 * np.log10(np.abs(speech).max() / np.abs(quiet).max()) < 35
