"""The diarization benchmark's own parts, without its scoring packages (pyannote.metrics, meeteval) or a diarizer:
conversations assembled from real clips (exact references, deterministic), RTTM / STM / per-speaker references,
the tables, the worker-diarize system's wiring, and the corpus reader leaving a dataset's subfolders alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from bench import conversations, corpus, references, report, run, worker_system
from bench import diarization as diarization_cli
from bench.diarization_report import Diarized, Scored, format_tables, groups
from bench.diarization_scores import DerParts, WordErrors, exclusive, score_text, speaker_texts
from bench.references import Recording, Utterance
from tests.support.audio_factory import tone
from tests.support.conversation import PROMPTS as VCTK
from tests.support.samples import DATA, JFK, JFK_TEXT
from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio
from worker.audio.wav import write_wav
from worker.diarization.turns import Turn
from worker.engine.transcript import Segment, Transcript

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clips_dir(tmp_path: Path) -> Path:
    """The dev set's layout in small: top-level clips, a MANIFEST.tsv, and a diarization/ subfolder to leave alone."""
    root = tmp_path / "dev"
    root.mkdir()
    rows = ["file\tseconds\tlanguage\tspeaker\tnotes"]
    for name, text in VCTK.items():
        shutil.copyfile(DATA / f"{name}.flac", root / f"{name}.flac")
        (root / f"{name}.txt").write_text(text + "\n")
        rows.append(f"{name}.flac\t6.0\ten\tVCTK {name.split('_')[1]}\t16 kHz")
    shutil.copyfile(JFK, root / "jfk.flac")
    (root / "jfk.txt").write_text(JFK_TEXT)
    rows.append("jfk.flac\t11.0\ten\tJohn F. Kennedy\t")
    write_wav(root / "anon.wav", tone(200.0, 1.0, SAMPLE_RATE))  # nobody knows who: not usable in a conversation
    (root / "anon.txt").write_text("Who said this?")
    rows.append("anon.wav\t1.0\ten\tFLEURS en_us (speaker id not given)\t")
    (root / "diarization").mkdir()
    write_wav(root / "diarization" / "meeting.wav", tone(300.0, 2.0, SAMPLE_RATE))
    (root / "diarization" / "meeting.txt").write_text("Joined per-speaker text, not in time order.")
    (root / "diarization" / "meeting.rttm").write_text("SPEAKER meeting 1 0.00 2.00 <NA> <NA> A <NA> <NA>\n")
    rows.append("diarization/meeting.wav\t2.0\ten\tA, B (2 speakers)\t")
    (root / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    return root


# ---------------------------------------------------------------------------------------------- clips


def test_clips_take_speakers_from_the_manifest(clips_dir: Path) -> None:
    clips = conversations.read_clips(clips_dir)
    assert [c.name for c in clips] == ["jfk", *sorted(VCTK)]  # not anon (unknown voice), not diarization/
    by_name = {c.name: c for c in clips}
    assert by_name["vctk_p225_003"].speaker == "VCTK_p225"  # one RTTM-safe token
    assert by_name["jfk"].speaker == "John_F._Kennedy"
    assert by_name["vctk_p226_011"].text == VCTK["vctk_p226_011"]


def test_without_a_manifest_the_speaker_comes_from_the_name(clips_dir: Path) -> None:
    (clips_dir / "MANIFEST.tsv").unlink()
    speakers = {c.name: c.speaker for c in conversations.read_clips(clips_dir)}
    assert speakers["vctk_p225_008"] == "vctk_p225"
    assert speakers["anon"] == "anon"
    assert conversations.speaker_from_name("librispeech_251-137823-0002") == "librispeech_251-137823"


def test_a_manifest_without_a_speaker_column_is_refused(clips_dir: Path) -> None:
    (clips_dir / "MANIFEST.tsv").write_text("file\tseconds\njfk.flac\t11.0\n")
    with pytest.raises(conversations.ClipsError, match="speaker"):
        conversations.read_clips(clips_dir)


def test_one_voice_cannot_make_a_conversation(clips_dir: Path) -> None:
    one = [c for c in conversations.read_clips(clips_dir) if c.speaker == "VCTK_p225"]
    with pytest.raises(conversations.ClipsError, match="two speakers"):
        conversations.plan(one, 1, seed=0)


def test_trim_cuts_silence_to_whole_milliseconds() -> None:
    speech = tone(440.0, 1.0, SAMPLE_RATE)
    padded = np.concatenate([np.zeros(SAMPLE_RATE), speech, np.full(SAMPLE_RATE // 2, 1e-4)]).astype(np.float32)
    cut = conversations.trim(padded)
    assert len(cut) % conversations.MS == 0
    pad = conversations.TRIM_PAD + conversations.TRIM_FRAME  # the pad, and the frame the edge falls in
    assert SAMPLE_RATE <= len(cut) <= SAMPLE_RATE + 2 * pad
    assert np.abs(cut[:10]).max() == 0.0  # the pad is the silence before the speech, not speech moved
    assert len(conversations.trim(np.zeros(100, dtype=np.float32))) == 96


# ---------------------------------------------------------------------------------------------- conversations


def test_plan_is_deterministic_with_a_seed(clips_dir: Path) -> None:
    clips = conversations.read_clips(clips_dir)
    first = conversations.plan(clips, 4, seed=7)
    assert first == conversations.plan(clips, 4, seed=7)
    assert any(conversations.plan(clips, 4, seed=s) != first for s in range(8, 12))
    assert [p.name for p in first] == ["conv01-2spk", "conv02-3spk", "conv03-3spk", "conv04-2spk"]  # 3 voices here
    for p in first:
        speakers = [c.speaker for c in p.clips]
        assert all(a != b for a, b in pairwise(speakers))  # turns alternate
        assert len(set(p.clips)) == len(p.clips)  # no clip twice
        assert len(p.gaps_ms) == len(p.clips) - 1
        assert all(200 <= gap <= 1000 for gap in p.gaps_ms)
    counts = [len({c.speaker for c in p.clips}) for p in first]
    assert counts == [2, 3, 3, 2]


def test_assembled_conversations_have_exact_references(clips_dir: Path) -> None:
    clips = conversations.read_clips(clips_dir)
    made = conversations.assemble(clips, 3, seed=3)
    assert [r.kind for r in made] == ["conversation"] * 3
    for recording in made:
        assert recording.samples is not None
        assert recording.samples.dtype == np.float32
        assert len(recording.samples) == round(recording.turns[-1].end * SAMPLE_RATE)
        assert recording.seconds == pytest.approx(recording.turns[-1].end)
        assert recording.speakers == len({t.speaker for t in recording.turns}) >= 2
        by_name = {c.name: c for c in clips}
        previous_end = 0.0
        for index, (turn, name, utterance) in enumerate(
            zip(recording.turns, recording.sources, recording.utterances, strict=True)
        ):
            clip = by_name[name]
            # The turn is exactly the clip's trimmed speech, on whole milliseconds, and nothing else.
            first, last = round(turn.start * SAMPLE_RATE), round(turn.end * SAMPLE_RATE)
            assert first % conversations.MS == 0 and last % conversations.MS == 0
            expected = conversations.trim(decode_audio(clip.audio, max_seconds=60))
            np.testing.assert_array_equal(recording.samples[first:last], expected)
            assert turn.speaker == clip.speaker == utterance.speaker
            assert (utterance.start, utterance.end, utterance.text) == (turn.start, turn.end, clip.text)
            if index:
                gap = turn.start - previous_end
                assert 0.2 - 1e-9 <= gap <= 1.0 + 1e-9
                assert not recording.samples[round(previous_end * SAMPLE_RATE) : first].any()  # silence
            previous_end = turn.end
        # Each speaker's words in turn order; everyone's in time order.
        texts = recording.speaker_texts()
        for speaker, text in texts.items():
            assert text == " ".join(by_name[n].text for n in recording.sources if by_name[n].speaker == speaker)
        assert recording.ordered_text() == " ".join(by_name[n].text for n in recording.sources)


def test_assembly_is_the_same_sample_for_sample(clips_dir: Path) -> None:
    clips = conversations.read_clips(clips_dir)
    once, again = conversations.assemble(clips, 2, seed=11), conversations.assemble(clips, 2, seed=11)
    for a, b in zip(once, again, strict=True):
        assert a.turns == b.turns and a.utterances == b.utterances and a.sources == b.sources
        np.testing.assert_array_equal(a.samples, b.samples)


def test_written_conversations_read_back_as_recordings(clips_dir: Path, tmp_path: Path) -> None:
    made = conversations.assemble(conversations.read_clips(clips_dir), 2, seed=5)
    out = tmp_path / "kept"
    for recording in made:
        conversations.write_recording(recording, out)
    again = references.read_recordings(out)
    assert [r.name for r in again] == [r.name for r in made]
    for written, read in zip(made, again, strict=True):
        assert read.seconds == pytest.approx(written.seconds, abs=1e-3)
        assert [(t.speaker, round(t.start, 3), round(t.end, 3)) for t in read.turns] == [
            (t.speaker, round(t.start, 3), round(t.end, 3)) for t in written.turns
        ]
        assert read.speaker_texts() == written.speaker_texts()
        assert read.ordered_text() == written.ordered_text()


# ---------------------------------------------------------------------------------------------- RTTM / STM


def test_rttm_speaker_lines_become_turns(tmp_path: Path) -> None:
    path = tmp_path / "call.rttm"
    path.write_text(
        ";; a comment\n"
        "SPKR-INFO call 1 <NA> <NA> <NA> unknown B <NA> <NA>\n"
        "SPEAKER mixture 1 2.59 0.36 <NA> <NA> B <NA> <NA>\n"  # the file id need not be the file's name
        "SPEAKER mixture 1 0.00 5.29 <NA> <NA> A <NA> <NA>\n"
        "SPEAKER mixture 1 7.00 0.00 <NA> <NA> A <NA> <NA>\n"  # empty: dropped
        "\n"
    )
    assert references.parse_rttm(path) == [Turn(0.0, 5.29, "A"), Turn(2.59, 2.95, "B")]
    path.write_text("SPEAKER call 1 zero 1.0 <NA> <NA> A <NA> <NA>\n")
    with pytest.raises(references.ReferenceError, match=r"call\.rttm:1"):
        references.parse_rttm(path)


def test_stm_utterances_in_time_order(tmp_path: Path) -> None:
    path = tmp_path / "call.stm"
    path.write_text(
        ";; CATEGORY lines and comments are skipped\n"
        "sample 1 Sheila 7.634 8.155 Hello?\n"
        "sample 1 Diane 6.68 7.16 Hello?\n"
        "sample 1 Diane 8.436 8.876 <o,f0,female> Oh, hello.\n"
        "sample 1 inter_segment_gap 8.9 9.0\n"
        "sample 1 Diane 9.0 9.5 ignore_time_segment_in_scoring\n"
    )
    assert references.parse_stm(path) == [
        Utterance("Diane", "Hello?", 6.68, 7.16),
        Utterance("Sheila", "Hello?", 7.634, 8.155),
        Utterance("Diane", "Oh, hello.", 8.436, 8.876),
    ]
    path.write_text("sample 1 Diane soon 7.16 Hello?\n")
    with pytest.raises(references.ReferenceError, match=r"call\.stm:1"):
        references.parse_stm(path)


def test_recordings_directory(tmp_path: Path) -> None:
    root = tmp_path / "diarization"
    root.mkdir()
    write_wav(root / "meeting.wav", tone(200.0, 3.0, SAMPLE_RATE))
    (root / "meeting.rttm").write_text(
        "SPEAKER mixture 1 0.0 2.0 <NA> <NA> FEE016 <NA> <NA>\nSPEAKER mixture 1 1.5 1.5 <NA> <NA> MEE014 <NA> <NA>\n"
    )
    (root / "meeting.spkA.txt").write_text("So simplification of\nsymbols.\n")
    (root / "meeting.spkB.txt").write_text("Mm. Yeah.")
    (root / "meeting.txt").write_text("A and B joined, not in time order")  # not read: the per-speaker files are
    write_wav(root / "call.wav", tone(300.0, 2.0, SAMPLE_RATE))
    (root / "call.rttm").write_text("SPEAKER sample 1 0.1 1.0 <NA> <NA> speaker90 <NA> <NA>\n")
    (root / "call.stm").write_text("sample 1 Diane 0.1 0.9 Hello?\nsample 1 Sheila 1.0 1.5 Hi.\n")
    write_wav(root / "silent.wav", tone(300.0, 1.0, SAMPLE_RATE))  # no .rttm: not a recording
    found = references.read_recordings(root)
    assert [r.name for r in found] == ["call", "meeting"]
    call, meeting = found
    assert call.seconds == pytest.approx(2.0)
    assert call.speakers == 1  # the RTTM's count is the oracle's
    assert call.ordered_text() == "Hello? Hi."
    assert meeting.speakers == 2
    assert meeting.speaker_texts() == {"A": "So simplification of symbols.", "B": "Mm. Yeah."}
    assert meeting.ordered_text() is None  # no times: WER falls back to MIMO-WER
    with pytest.raises(references.ReferenceError, match=r"same-named \.rttm"):
        references.read_recordings(tmp_path)


# ---------------------------------------------------------------------------------------------- the corpus fix


def test_corpus_takes_only_top_level_clips(clips_dir: Path) -> None:
    (clips_dir / "jfk.rttm").write_text("SPEAKER jfk 1 0.0 11.0 <NA> <NA> JFK <NA> <NA>\n")  # beside jfk.txt
    found = corpus.from_directory(clips_dir)
    assert sorted(item.name for item in found.items) == sorted(["anon", "jfk", *VCTK])
    assert all(item.audio.parent == clips_dir for item in found.items)


# ---------------------------------------------------------------------------------------------- scoring parts


def test_overlapping_reference_turns_become_exclusive() -> None:
    turns = [Turn(0.0, 10.0, "A"), Turn(2.0, 3.0, "B"), Turn(9.0, 12.0, "C"), Turn(13.0, 14.0, "A")]
    assert exclusive(turns) == [
        Turn(0.0, 2.0, "A"),
        Turn(2.0, 3.0, "B"),  # the interjection holds the floor while it lasts
        Turn(3.0, 9.0, "A"),  # and the long turn resumes after it
        Turn(9.0, 12.0, "C"),
        Turn(13.0, 14.0, "A"),
    ]


def test_texts_are_scored_normalised_with_ami_letters_joined() -> None:
    assert score_text("a little L_C_D_ display. Mm-hmm.") == score_text("A little LCD display!")
    assert score_text("Mm. Um.") == ""


def test_speaker_texts_group_segments_and_keep_unlabelled_words() -> None:
    segments = [
        Segment(0, 0.0, 1.0, " Hello there.", speaker="SPEAKER_00"),
        Segment(1, 1.0, 2.0, " Hi.", speaker="SPEAKER_01"),
        Segment(2, 2.0, 3.0, " How are you?", speaker="SPEAKER_00"),
        Segment(3, 9.0, 9.5, " Bye.", speaker=None),
    ]
    texts = speaker_texts(Transcript("", "en", 10.0, segments, speakers={}))
    assert texts == {"SPEAKER_00": "Hello there. How are you?", "SPEAKER_01": "Hi.", "(none)": "Bye."}


def test_the_benchmark_imports_without_the_scoring_packages() -> None:
    # A fresh interpreter where importing pyannote.metrics, pyannote.core or meeteval fails, as in the test install.
    script = (
        "import sys\n"
        "for name in ('meeteval', 'meeteval.wer', 'pyannote.metrics', 'pyannote.core'):\n"
        "    sys.modules[name] = None\n"
        "import bench.diarization, bench.diarization_scores, bench.diarization_report, bench.run\n"
        "sys.exit(bench.diarization.main(['--recordings', '.']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr  # says what to install instead of a traceback
    assert "pip install -e '.[bench]'" in done.stderr


# ---------------------------------------------------------------------------------------------- tables


def _scored(name: str, kind: str, speakers: int, found: int, seconds: float, errors: int) -> Scored:
    turns = [Turn(float(i), float(i) + 1.0, f"S{i}") for i in range(speakers)]
    recording = Recording(name, seconds, turns, [Utterance("S0", "hello")], kind=kind)
    hyp = [Turn(0.0, 1.0, f"H{i}") for i in range(found)]
    result = Scored(recording)
    result.diarized["estimated"] = Diarized(hyp, seconds / 10, DerParts(1.0, 0.5, 0.5, 20.0))
    result.diarized["oracle"] = Diarized(hyp[:speakers], seconds / 8, DerParts(1.0, 0.5, 0.0, 20.0))
    result.wer = WordErrors(errors, 100, detail={"kind": "mimo" if kind == "recording" else "plain"})
    result.cpwer = {
        g: {a: WordErrors(errors + 5, 100) for a in ("estimated", "oracle", "reference")} for g in ("segments", "words")
    }
    return result


def test_tables_and_totals() -> None:
    results = [
        _scored("ami_mixture", "recording", 4, 3, 60.0, 20),
        _scored("conv01-2spk", "conversation", 2, 2, 40.0, 10),
        _scored("conv02-3spk", "conversation", 3, 3, 50.0, 0),
    ]
    totals = {t.label.strip(): t for t in groups(results)}
    assert list(totals) == ["recordings (1)", "conversations (2)", "2 speakers (1)", "3 speakers (1)", "all (3)"]
    everything = totals["all (3)"]
    assert everything.der["estimated"].rate == pytest.approx(0.1)  # seconds summed: 6 of 60
    assert everything.found["estimated"] == "2/3"  # recordings whose count came out right
    assert everything.realtime("estimated") == pytest.approx(10.0)
    assert everything.wer is not None and everything.wer.rate == pytest.approx(0.1)  # 30 of 300 words
    assert everything.cpwer["words"]["reference"].rate == pytest.approx(45 / 300)
    text = format_tables(results)
    assert "who spoke when" in text and "what each said" in text
    ami = next(line for line in text.splitlines() if line.startswith("ami_mixture") and "20.0*" in line)
    assert "25.0" in ami  # cpWER
    assert "10.0x" in text  # x realtime
    assert "MIMO-WER" in text


def test_no_text_reference_means_no_word_table() -> None:
    only = _scored("call", "recording", 2, 2, 30.0, 0)
    only.wer, only.cpwer = None, {}
    assert "what each said" not in format_tables([only])


# ---------------------------------------------------------------------------------------------- CLI, worker


def test_cli_needs_data(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        diarization_cli.parse_args([])
    assert "--recordings DIR, --clips DIR or both" in capsys.readouterr().err
    args = diarization_cli.parse_args(["--clips", "dev", "--conversations", "3", "--seed", "2", "--device", "cuda"])
    assert (args.conversations, args.seed, args.device, args.recordings) == (3, 2, "cuda", None)


def test_worker_diarize_is_opt_in_and_sits_beside_the_worker() -> None:
    assert "worker-diarize" not in run.parse_args([]).systems
    assert run.parse_args(["--systems", "worker", "--diarize"]).systems == ["worker", "worker-diarize"]
    assert run.parse_args(["--systems", "worker,engine", "--diarize"]).systems == ["worker", "worker-diarize", "engine"]
    assert run.parse_args(["--systems", "worker-diarize", "--diarize"]).systems == ["worker-diarize"]
    assert '"diarize": true' in worker_system._message("j", "s3://b/k", diarize=True)
    assert "diarize" not in worker_system._message("j", "s3://b/k")


def test_report_shows_the_cost_of_diarizing_beside_the_worker() -> None:
    items = [{"name": "a", "text": "hello there", "kind": "clip", "seconds": 10.0}]
    plain = {"status": "ok", "texts": ["hello there"], "errors": [None], "wall_seconds": 2.0, "item_seconds": [None]}
    diarized = {**plain, "wall_seconds": 4.0, "extra": {"diarize": True, "speakers_found": [1]}}
    diarized["texts"] = ["[SPEAKER_00] hello there"]  # the txt transcript's label
    summaries = [report.summarise("worker", items, plain), report.summarise("worker-diarize", items, diarized)]
    report.add_ratios(summaries)
    assert summaries[1].total.wer == 0.0  # the label is not a word
    row = next(line for line in report.format_table(summaries).splitlines() if line.startswith("worker-diarize"))
    assert "diarize: true; 0.50x worker's speed; speakers found: 1 in 1" in row
