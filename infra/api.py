"""HTTPS submit endpoint for backends outside AWS.

``POST /jobs`` validates the body against the job message schema and sends it straight to the jobs queue (an
API Gateway service integration, no Lambda); ``GET /jobs/{job_id}`` returns the job's ``result.json``, or its
``status.json`` while there is none. Callers authenticate with IAM (SigV4) or an API key; the stage is throttled.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.functions_code import python_function

STAGE = "v1"
MODEL_NAME = "JobMessageV1"
SEND_MESSAGE_TEMPLATE = "Action=SendMessage&MessageBody=$util.urlEncode($input.body)"
ACCEPTED_TEMPLATE = json.dumps(
    {
        "message_id": "$input.path('$.SendMessageResponse.SendMessageResult.MessageId')",
        "request_id": "$context.requestId",
    }
)
ERROR_TEMPLATE = json.dumps({"error": "queue_rejected", "request_id": "$context.requestId"})
JSON_ERROR_BODY = '{"error": "$context.error.responseType", "message": $context.error.messageString}'
# validationErrorString names the offending fields; escapeJavaScript's \\' is not JSON, so undo that one escape.
INVALID_BODY = (
    '{"error": "invalid_message", "message": $context.error.messageString, "details": '
    '"$util.escapeJavaScript($context.error.validationErrorString).replaceAll("\\\\\'","\'")"}'
)


class SubmitApi(Construct):
    """The Stack grants ``send_role`` SendMessage on the queue and ``status_role`` read on the results."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        queue: sqs.IQueue,
        message_schema: dict[str, Any],
        code: lambda_.Code,
        status_environment: dict[str, str],
        auth: str,
        rate_limit: int,
        burst_limit: int,
        quota_per_day: int | None,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, id)
        use_iam = auth == "iam"
        access_logs = logs.LogGroup(self, "AccessLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.api = apigw.RestApi(
            self,
            "Api",
            description="whisper-batch: submit transcription jobs and read their results",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,  # API Gateway logs through one account-wide role: kept on destroy (the default)
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
            ),
            default_method_options=apigw.MethodOptions(
                authorization_type=apigw.AuthorizationType.IAM if use_iam else apigw.AuthorizationType.NONE,
                api_key_required=not use_iam,
            ),
        )
        self.api.node.try_remove_child("Endpoint")  # the Stack's output ApiUrl replaces RestApi's own output
        self.api.add_gateway_response(
            "InvalidBody", type=apigw.ResponseType.BAD_REQUEST_BODY, templates={"application/json": INVALID_BODY}
        )
        self.api.add_gateway_response(
            "Default4xx", type=apigw.ResponseType.DEFAULT_4_XX, templates={"application/json": JSON_ERROR_BODY}
        )
        if not use_iam:
            self._api_key(rate_limit, burst_limit, quota_per_day)

        self.send_role = iam.Role(
            self,
            "SendRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="whisper-batch API: send validated job messages to the jobs queue",
        )
        validator = apigw.RequestValidator(
            self, "Validator", rest_api=self.api, validate_request_body=True, validate_request_parameters=True
        )
        jobs = self.api.root.add_resource("jobs")
        jobs.add_method(
            "POST",
            self._send_integration(queue),
            request_models={"application/json": self._message_model(message_schema)},
            request_validator=validator,
            method_responses=[apigw.MethodResponse(status_code=code) for code in ("202", "400", "500")],
        )

        status = python_function(
            self,
            "Status",
            code=code,
            handler="functions.job_status.handler",
            description="whisper-batch: GET /jobs/{job_id}",
            role_description="whisper-batch API: read a job's result.json or status.json",
            environment=status_environment,
            log_retention=log_retention,
            timeout=Duration.seconds(10),
        )
        self.status_role, self.status_function, self.status_log_group = status.role, status.function, status.log_group
        self.access_logs = access_logs
        jobs.add_resource("{job_id}").add_method(
            "GET",
            apigw.LambdaIntegration(self.status_function),
            request_parameters={"method.request.path.job_id": True},
            request_validator=validator,
        )

    @property
    def url(self) -> str:
        return self.api.url

    def _send_integration(self, queue: sqs.IQueue) -> apigw.AwsIntegration:
        return apigw.AwsIntegration(
            service="sqs",
            path=f"{Aws.ACCOUNT_ID}/{queue.queue_name}",
            integration_http_method="POST",
            options=apigw.IntegrationOptions(
                credentials_role=self.send_role,
                passthrough_behavior=apigw.PassthroughBehavior.NEVER,
                request_parameters={
                    "integration.request.header.Content-Type": "'application/x-www-form-urlencoded'",
                    "integration.request.header.Accept": "'application/json'",
                },
                request_templates={"application/json": SEND_MESSAGE_TEMPLATE},
                integration_responses=[
                    apigw.IntegrationResponse(
                        status_code="202", response_templates={"application/json": ACCEPTED_TEMPLATE}
                    ),
                    apigw.IntegrationResponse(
                        status_code="400",
                        selection_pattern="4\\d{2}",
                        response_templates={"application/json": ERROR_TEMPLATE},
                    ),
                    apigw.IntegrationResponse(
                        status_code="500",
                        selection_pattern="5\\d{2}",
                        response_templates={"application/json": ERROR_TEMPLATE},
                    ),
                ],
            ),
        )

    def _message_model(self, schema: dict[str, Any]) -> apigw.IModel:
        model = apigw.CfnModel(
            self,
            "JobMessageModel",
            rest_api_id=self.api.rest_api_id,
            content_type="application/json",
            name=MODEL_NAME,
            description="whisper-batch job message, contract version 1 (from worker.contract.json_schema)",
            schema=schema,
        )
        self.api.latest_deployment.add_to_logical_id({"model": schema})  # a schema change redeploys the stage
        return apigw.Model.from_model_name(self, "JobMessage", model.ref)

    def _api_key(self, rate_limit: int, burst_limit: int, quota_per_day: int | None) -> None:
        key = self.api.add_api_key("ApiKey", description="whisper-batch backend key")
        plan = self.api.add_usage_plan(
            "UsagePlan",
            throttle=apigw.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
            quota=apigw.QuotaSettings(limit=quota_per_day, period=apigw.Period.DAY) if quota_per_day else None,
        )
        plan.add_api_key(key)
        plan.add_api_stage(stage=self.api.deployment_stage)
        self.api_key_id = key.key_id
