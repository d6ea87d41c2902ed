"""Operating the worker. Two layers in one folder (pyproject.toml's import-linter contract names each module):

leaves, imported from every layer and importing nothing of the worker above them:
logs.py      JSON log lines with each job's keys; redact.py keeps presigned URLs out of them
metrics.py   CloudWatch EMF metrics per settled message

the top layer, beside ``worker.cli``, importing the service, engine, models and diarization:
health.py    checks of the queue, bucket, models and device (``whisper-worker health``)
cli.py       ``whisper-worker models fetch|list`` and ``health``
"""
