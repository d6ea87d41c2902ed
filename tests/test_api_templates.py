"""The HTTPS API's mapping templates, taken from the synthesized stack and run by a Velocity engine: a job POSTed to
the API reaches SQS byte for byte, the 202 names SQS's message id, and the error bodies are JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from tests.support.apigateway import render, send_signed, sqs_json_response
from worker.contract import parse_message
from worker.local.moto_server import LocalAws

ROOT = Path(__file__).resolve().parent.parent
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:whisper-webhook-AbCdEf"

# Bodies that break a template which forgets to encode: &, =, + and % in a form body, quotes, newlines, non-ASCII.
JOBS = [
    {"audio": "s3://bucket/audio/a.flac", "job_id": "plain-1"},
    {
        "audio": "https://example.com/a+b.mp3?x=1&y=%20z",
        "job_id": "tricky-2",
        "initial_prompt": 'Zoë said "hi" & left;\nthen: 100% + 5 = 105 ~ ü 音声 🎙',
        "metadata": {"crm": {"id": "a=b&c", "tags": ["x+y", "50%"]}},
    },
]


@pytest.fixture(scope="module")
def resources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from infra.app import build

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context |= {"webhookSecretArn": SECRET_ARN, "alarmEmail": "ops@example.com"}
    app = App(context=context, outdir=str(tmp_path_factory.mktemp("cdk-api")))
    return Template.from_stack(build(app, env={})).to_json()["Resources"]


@pytest.fixture(scope="module")
def local() -> Iterator[LocalAws]:
    with LocalAws() as aws:
        yield aws


def _post_integration(resources: dict[str, Any]) -> dict[str, Any]:
    methods = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::Method"]
    (post,) = [m for m in methods if m["Properties"]["HttpMethod"] == "POST"]
    return post["Properties"]["Integration"]


def _gateway_template(resources: dict[str, Any], response_type: str) -> str:
    (response,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::ApiGateway::GatewayResponse" and r["Properties"]["ResponseType"] == response_type
    ]
    return response["ResponseTemplates"]["application/json"]


@pytest.mark.parametrize("job", JOBS, ids=[j["job_id"] for j in JOBS])
def test_a_posted_job_reaches_the_queue_unchanged_and_the_answer_names_its_message(
    resources: dict[str, Any], local: LocalAws, job: dict[str, Any]
) -> None:
    integration = _post_integration(resources)
    body = json.dumps(job, ensure_ascii=False, indent=1)  # as a backend may send it: pretty, not ASCII-escaped
    form = render(integration["RequestTemplates"]["application/json"], body=body)

    r = local.resources
    assert r is not None
    answer = send_signed(r.queue_url, form)
    assert answer.status_code == 200, answer.text
    sqs = local.client("sqs")
    [message] = sqs.receive_message(QueueUrl=r.queue_url, WaitTimeSeconds=1)["Messages"]
    sqs.delete_message(QueueUrl=r.queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert message["Body"] == body  # byte for byte, so the worker reads exactly what was posted
    assert parse_message(message["Body"]).job_id == job["job_id"]

    (accepted,) = [x for x in integration["IntegrationResponses"] if x["StatusCode"] == "202"]
    rendered = render(
        accepted["ResponseTemplates"]["application/json"],
        body=sqs_json_response(answer.text),
        context={"requestId": "req-1"},
    )
    assert json.loads(rendered) == {"message_id": message["MessageId"], "request_id": "req-1"}


def test_error_answers_are_json_whatever_the_messages_hold(resources: dict[str, Any]) -> None:
    # API Gateway hands messageString over already quoted; validationErrorString raw, quotes and all.
    context = {
        "requestId": "req-2",
        "error": {
            "responseType": "BAD_REQUEST_BODY",
            "messageString": json.dumps("Invalid request body"),
            "validationErrorString": "[instance value (\"docx\") not found in enum (possible values: ['json'])]",
        },
    }
    invalid = json.loads(render(_gateway_template(resources, "BAD_REQUEST_BODY"), context=context))
    assert invalid["error"] == "invalid_message" and invalid["message"] == "Invalid request body"
    assert invalid["details"] == context["error"]["validationErrorString"]

    other = json.loads(render(_gateway_template(resources, "DEFAULT_4XX"), context=context))
    assert other == {"error": "BAD_REQUEST_BODY", "message": "Invalid request body"}

    integration = _post_integration(resources)
    for answer in integration["IntegrationResponses"]:
        if answer["StatusCode"] != "202":
            rendered = json.loads(render(answer["ResponseTemplates"]["application/json"], context=context))
            assert rendered == {"error": "queue_rejected", "request_id": "req-2"}
