"""whisper-batch's client for backends: ``from whisper_batch import TranscriptionClient``.

Submit jobs, follow them, fetch transcripts, price them, read and settle the dead-letter queue. The bare install
(boto3, pydantic, rich) is enough. This is the name to import; the same objects stay importable from
``worker.client``, where they live, for code written against that path.
"""

from typing import Any

from worker import client as _client

__all__ = list(_client.__all__)


def __getattr__(name: str) -> Any:
    # Resolved on first use, as worker.client does, so importing the package loads no boto3.
    if name not in __all__:
        raise AttributeError(f"module 'whisper_batch' has no attribute {name!r}")
    return getattr(_client, name)
