"""Readable subtitles of real speech through the real worker: SQS messages in, SRT and WebVTT out of S3 that keep to
the job's limits, parse in headless Chromium with the same cues and voices, and convert with ffmpeg without a
warning; JSON keeps Whisper's segments and shows words only to a job that asked for them."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.corpus import DEV_CORPUS
from tests.support.readability import Report, check, parse
from tests.support.samples import TEST_MODEL
from worker.contract import Subtitles
from worker.engine import Engine
from worker.local.moto_server import LocalAws
from worker.service.app import build_worker
from worker.service.render import RENDERERS
from worker.service.settings import Settings
from worker.transcript import Segment, Transcript

SOLO = DEV_CORPUS / "librispeech_1221-135766-0001.flac"  # one reader, 16.7 s
TALK = DEV_CORPUS / "diarization" / "pyannote_sample.flac"  # a two-party phone call, 30 s
NARROW = {"max_line_width": 32, "speaker_labels": "changes"}
JOBS = {
    "solo": {"audio": "solo", "formats": ["json", "srt", "vtt"]},
    "solo-words": {"audio": "solo", "formats": ["json", "srt"], "word_timestamps": True},
    "solo-segments": {"audio": "solo", "formats": ["json", "srt", "vtt"], "subtitles": {"style": "segments"}},
    "talk": {"audio": "talk", "diarize": True, "formats": ["json", "srt", "vtt", "txt", "tsv"]},
    "talk-narrow": {"audio": "talk", "diarize": True, "formats": ["srt", "vtt"], "subtitles": NARROW},
}
pytestmark = [
    pytest.mark.e2e,  # a whole worker on 46 s of speech with word timings and diarization: minutes on two cores
    pytest.mark.skipif(not (SOLO.is_file() and TALK.is_file()), reason="the dev speech corpus is not here"),
]


@dataclass
class Done:
    objects: dict[str, str]
    completed: int

    def text(self, job: str, fmt: str) -> str:
        return self.objects[f"results/{job}/transcript.{fmt}"]


@pytest.fixture(scope="module")
def done(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Done]:
    model_dir = tmp_path_factory.getbasetemp() / "models"
    model_dir.mkdir(exist_ok=True)
    with LocalAws(visibility_timeout=120, max_receive_count=3) as local:
        r = local.resources
        assert r is not None
        s3, sqs = local.client("s3"), local.client("sqs")
        for name, path in (("solo", SOLO), ("talk", TALK)):
            s3.upload_file(str(path), r.bucket, f"audio/{name}{path.suffix}")
        urls = {"solo": f"s3://{r.bucket}/audio/solo.flac", "talk": f"s3://{r.bucket}/audio/talk.flac"}
        for job_id, body in JOBS.items():
            message = {"job_id": job_id, "model": TEST_MODEL, **body, "audio": urls[body["audio"]]}
            sqs.send_message(QueueUrl=r.queue_url, MessageBody=json.dumps(message))
        settings = local.settings(
            Settings(), model_dir=model_dir, default_model=TEST_MODEL, device="cpu", wait_seconds=1, max_jobs=len(JOBS)
        )
        stats = build_worker(settings, engine=engine).run()
        listing = s3.list_objects_v2(Bucket=r.bucket, Prefix="results/").get("Contents", [])
        objects = {i["Key"]: s3.get_object(Bucket=r.bucket, Key=i["Key"])["Body"].read().decode() for i in listing}
        yield Done(objects, stats.completed)


def _report(done: Done, job: str, fmt: str, limits: Subtitles) -> Report:
    report = check(parse(done.text(job, fmt)), limits)
    # Cues over the reading speed that the speech forces (no pause after them to stay on into) are reported, not failed.
    print(f"{job}.{fmt}: {report.cues} cues, {len(report.fast_forced)} over the reading speed the speech forces")
    return report


@pytest.mark.parametrize(
    ("job", "limits"),
    [("solo", Subtitles()), ("talk", Subtitles()), ("talk-narrow", Subtitles(**NARROW))],
)
@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_real_speech_keeps_to_the_limits(done: Done, job: str, limits: Subtitles, fmt: str) -> None:
    assert done.completed == len(JOBS)
    report = _report(done, job, fmt, limits)
    assert report.cues >= 3 and report.problems() == []


def test_the_conversation_names_both_speakers_and_no_cue_mixes_them(done: Done) -> None:
    vtt, srt = parse(done.text("talk", "vtt")), parse(done.text("talk", "srt"))
    assert {c.voice for c in vtt} == {"SPEAKER_00", "SPEAKER_01"} and not any(c.label for c in vtt)
    assert {c.label for c in srt} == {"SPEAKER_00", "SPEAKER_01"}  # SRT: on every cue by default
    doc = json.loads(done.text("talk", "json"))
    assert [s["speaker"] for s in doc["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]
    narrow = parse(done.text("talk-narrow", "srt"))
    labelled = [c.label for c in narrow if c.label]
    assert labelled and all(a != b for a, b in itertools.pairwise(labelled))  # only where it changes


def test_json_keeps_whisper_segments_and_words_only_when_asked(done: Done) -> None:
    for job in ("solo", "solo-segments", "talk"):
        doc = json.loads(done.text(job, "json"))
        assert doc["segments"] and "words" not in doc and all("words" not in s for s in doc["segments"])
    asked = json.loads(done.text("solo-words", "json"))
    assert asked["words"] and all(s["words"] for s in asked["segments"])
    assert "\t" in done.text("talk", "tsv") and done.text("talk", "txt").startswith("[SPEAKER_00]")


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_segments_style_is_the_earlier_one_cue_per_segment(done: Done, fmt: str) -> None:
    doc = json.loads(done.text("solo-segments", "json"))
    segments = [Segment(s["id"], s["start"], s["end"], s["text"]) for s in doc["segments"]]
    transcript = Transcript(doc["text"], doc["language"], doc["duration"], segments)
    assert done.text("solo-segments", fmt) == RENDERERS[fmt](transcript)
    assert len(parse(done.text("solo-segments", fmt))) == len([s for s in segments if s.text.strip()])


# --- what players make of them ----------------------------------------------------------------------------------------

PAGE = """<!doctype html><html><body><video><track kind="subtitles" src="subs.vtt" default></video><pre id="out">-</pre>
<script>
const track = document.querySelector("track"), out = document.getElementById("out");
track.addEventListener("load", () => { out.textContent = JSON.stringify(Array.from(track.track.cues, (c) => ({
  start: c.startTime, end: c.endTime,
  voices: Array.from(c.getCueAsHTML().querySelectorAll("span[title]"), (s) => s.title),
}))); });
track.addEventListener("error", () => { out.textContent = "error"; });
track.track.mode = "hidden";
</script></body></html>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed: make chromium")
    return found


@pytest.mark.parametrize("job", ["solo", "talk", "talk-narrow"])
def test_chromium_reads_every_cue_and_voice(done: Done, job: str, tmp_path: Path) -> None:
    (tmp_path / "subs.vtt").write_text(done.text(job, "vtt"))
    (tmp_path / "page.html").write_text(PAGE)
    dumped = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
            (tmp_path / "page.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    seen = json.loads(dumped.split('<pre id="out">', 1)[1].split("</pre>", 1)[0])
    ours = parse(done.text(job, "vtt"))
    assert len(seen) == len(ours)
    assert [(round(c["start"], 3), round(c["end"], 3)) for c in seen] == [
        (round(c.start, 3), round(c.end, 3)) for c in ours
    ]
    assert [c["voices"] for c in seen] == [[c.voice] if c.voice else [] for c in ours]


@pytest.mark.parametrize(("job", "fmt"), [("solo", "srt"), ("solo", "vtt"), ("talk", "srt"), ("talk", "vtt")])
def test_ffmpeg_converts_them_without_a_warning(done: Done, job: str, fmt: str, tmp_path: Path) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed: make ffmpeg")
    source = tmp_path / f"in.{fmt}"
    source.write_text(done.text(job, fmt))
    target = tmp_path / ("out.vtt" if fmt == "srt" else "out.srt")
    run = subprocess.run(
        [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "warning", "-i", str(source), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert len(parse(target.read_text())) == len(parse(done.text(job, fmt)))
