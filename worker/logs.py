"""One structured JSON logger for the worker (aws-lambda-powertools), keys appended per job."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger

logger = Logger(
    service=os.environ.get("WHISPER_SERVICE_NAME", "whisper-batch"),
    level=os.environ.get("WHISPER_LOG_LEVEL", "INFO"),
)
