"""Numbers the worker and the stack must agree on: a leaf (no imports), so ``infra/`` reads them here rather than
keeping copies, and the worker's modules that use them need not be imported (they pull in torch and numpy).

Decoded audio is float32 mono at Whisper's 16 kHz; the decoded-audio budget counts it twice (the decoder's chunks
and the joined array, or the mel, coexist at the peak), keeps room for the model, PyTorch and the Python runtime,
and gives decoded audio half of what is left.
"""

from typing import Final

SAMPLE_RATE: Final = 16_000  # Whisper's input rate, samples per second
DECODED_BYTES_PER_SECOND: Final = SAMPLE_RATE * 4  # float32 mono
BUDGET_BYTES_PER_SECOND: Final = 2 * DECODED_BYTES_PER_SECOND  # a decoded second at its peak
RUNTIME_RESERVE_BYTES: Final = int(2.5 * 1024**3)  # the model, PyTorch and the Python runtime
AUDIO_SHARE: Final = 0.5  # of the memory past the reserve; working buffers get the rest
MINIMUM_DECODED_SECONDS: Final = 600.0  # the budget never holds less, whatever the memory

MAX_AUDIO_SECONDS: Final = 6 * 3600.0  # the longest recording a worker accepts by default (WHISPER_MAX_AUDIO_SECONDS)
# Past WHISPER_MAX_RUNTIME_SECONDS a worker stops receiving and has this long to finish what it holds.
RUNTIME_FINISH_SECONDS: Final = 600.0
