"""Audio in: any common file to 16 kHz mono float32, within the worker's memory.

    decode.py   decoding with PyAV (or the standard library for 16 kHz mono WAV), and estimating a file's length
    isolated.py the worker's decoder: a pool of child processes, so a crash in FFmpeg fails one job, not the worker
    child.py    the child process's entry point: a memory limit, one request at a time, samples out via shared memory
    budget.py   the decoded-audio budget all messages in progress share
    wav.py      16-bit mono WAV files, for tests, the soak and the benchmark
    speech.py   where a recording speaks (Silero VAD), as sample ranges on its own timeline

The constants below are Whisper's input format, used by every stage that handles samples.
"""

from worker.limits import DECODED_BYTES_PER_SECOND, SAMPLE_RATE

__all__ = ["DECODED_BYTES_PER_SECOND", "SAMPLE_RATE"]
