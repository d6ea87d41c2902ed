"""The deploy-time build of the worker image (``imageBuild=codebuild``), as a custom resource of CDK's Provider
framework: ``on_event`` starts a CodeBuild build when the image tag (the hash of the build context) is new, and
``is_complete`` polls it until it succeeds, or fails the deploy naming the build's failed phase. Delete does nothing:
the repository's lifecycle rule drops old images, and the repository goes with the stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3

DONE_STATES = ("SUCCEEDED",)
FAILED_STATES = ("FAILED", "FAULT", "STOPPED", "TIMED_OUT")


def on_event(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    props = event["ResourceProperties"]
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    build = boto3.client("codebuild").start_build(projectName=props["ProjectName"])["build"]
    # The tag is the resource's identity: a new tag replaces it, and the old one's delete is a no-op.
    return {"PhysicalResourceId": props["ImageTag"], "Data": {"BuildId": build["id"]}}


def is_complete(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    build_id = event["Data"]["BuildId"]
    (build,) = boto3.client("codebuild").batch_get_builds(ids=[build_id])["builds"]
    status = build["buildStatus"]
    if status in DONE_STATES:
        return {"IsComplete": True}
    if status in FAILED_STATES:
        failed = [p["phaseType"] for p in build.get("phases", []) if p.get("phaseStatus") in FAILED_STATES]
        link = (build.get("logs") or {}).get("deepLink", "")
        raise RuntimeError(f"image build {build_id} {status} in {', '.join(failed) or 'an unknown phase'}: {link}")
    return {"IsComplete": False}
