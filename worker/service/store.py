"""Results in S3: ``<prefix><job_id>/transcript.<fmt>`` and ``<prefix><job_id>/result.json``."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from worker import aws
from worker.contract.result import JobResult
from worker.errors import StoreUnavailable
from worker.service.render import CONTENT_TYPES

RESULT_CONTENT_TYPE = "application/json; charset=utf-8"


class ResultStore:
    def __init__(self, s3: Any, bucket: str, prefix: str = "results/") -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix

    def key(self, job_id: str, filename: str) -> str:
        # job_id is validated against [A-Za-z0-9_-]{1,128} before it gets here; the check repeats the guard.
        if not job_id or "/" in job_id or job_id in (".", ".."):
            raise ValueError(f"unsafe job id {job_id!r}")
        return f"{self.prefix}{job_id}/{filename}"

    def _put(self, key: str, body: str, content_type: str, download_name: str) -> None:
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body.encode("utf-8"),
                ContentType=content_type,
                ContentDisposition=f'inline; filename="{download_name}"',
            )
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc

    def put_transcript(self, job_id: str, fmt: str, text: str) -> str:
        key = self.key(job_id, f"transcript.{fmt}")
        self._put(key, text, CONTENT_TYPES[fmt], f"{job_id}.{fmt}")
        return key

    def put_result(self, job_id: str, result: JobResult) -> str:
        key = self.key(job_id, "result.json")
        body = json.dumps(result.to_dict(), ensure_ascii=False, indent=2)
        self._put(key, body, RESULT_CONTENT_TYPE, f"{job_id}.result.json")
        return key

    def get_result(self, job_id: str) -> JobResult | None:
        """The stored result, or None when there is none yet."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.key(job_id, "result.json"))["Body"].read()
        except ClientError as exc:
            if aws.error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise StoreUnavailable(f"cannot read result of {job_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"cannot read result of {job_id}: {exc}") from exc
        try:
            document = json.loads(body)
        except ValueError:
            return None
        return JobResult.from_dict(document) if isinstance(document, dict) else None
