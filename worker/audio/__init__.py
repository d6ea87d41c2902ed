"""Audio in: any common file to 16 kHz mono float32, within the worker's memory.

    decode.py   decoding with PyAV (or the standard library for 16 kHz mono WAV), and estimating a file's length
    isolated.py the worker's decoder: a pool of child processes, so a crash in FFmpeg fails one job, not the worker
    child.py    the child process's entry point: a memory limit, one request at a time, samples out via shared memory
    budget.py   the decoded-audio budget all messages in progress share
    wav.py      16-bit mono WAV files, for tests, the soak and the benchmark

The constants below are Whisper's input format, used by every stage that handles samples.
"""

from typing import Final

SAMPLE_RATE: Final = 16_000  # Whisper's input rate, samples per second
DECODED_BYTES_PER_SECOND: Final = SAMPLE_RATE * 4  # float32 mono
