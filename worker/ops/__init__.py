"""Operating the worker.

logs.py      JSON log lines with each job's keys; redact.py keeps presigned URLs out of them
metrics.py   CloudWatch EMF metrics per settled message
health.py    checks of the queue, bucket, models and device (``whisper-worker health``)
cli.py       ``whisper-worker models fetch|list`` and ``health``
"""
