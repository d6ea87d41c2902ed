"""Alarms (DLQ not empty, oldest message too old, scaler errors, settle errors) and failed worker jobs (Batch's own
"Batch Job State Change" events) to an SNS topic, and the service dashboard.

The worker publishes CloudWatch EMF metrics in the configured namespace, each with dimension
``service=whisper-batch``: JobsCompleted, JobsFailed (also by ``error_code``), JobsRetried, AudioSeconds,
ProcessingSeconds, RealtimeFactor, QueueWaitSeconds, ModelLoadSeconds. The scaler adds ActiveWorkers,
WorkersSubmitted and ScalerHeldBack.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import SERVICE_NAME

PERIOD = Duration.minutes(1)
DASHBOARD_PERIOD = Duration.minutes(5)
# Publishers to the encrypted topic need the key: CloudWatch for alarms, EventBridge for failed jobs.
UNSETTLED_SECONDS = 900  # a dead letter older than this was not settled: the settle Lambda is failing
TOPIC_PUBLISHERS = ("cloudwatch.amazonaws.com", "events.amazonaws.com")


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        jobs_queue: sqs.IQueue,
        dlq: sqs.IQueue,
        settled_letters: sqs.IQueue,
        scaler: lambda_.IFunction,
        settler: lambda_.IFunction,
        job_queue_arn: str,
        namespace: str,
        oldest_message_threshold: Duration,
        alarm_email: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.namespace = namespace
        key = kms.Key(
            self,
            "AlarmTopicKey",
            enable_key_rotation=True,
            description="whisper-batch: encrypts the alarm topic",
            removal_policy=RemovalPolicy.DESTROY,
        )
        for publisher in TOPIC_PUBLISHERS:
            key.grant(iam.ServicePrincipal(publisher), "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(
            self, "AlarmTopic", master_key=key, enforce_ssl=True, display_name="whisper-batch alarms"
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))

        # Dead letters move on to the settled-letters queue within seconds, so both count: a dead letter stays
        # visible in one or the other until someone lists or redrives it.
        unsettled_depth = dlq.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
        settled_depth = settled_letters.metric_approximate_number_of_messages_visible(
            period=PERIOD, statistic="Maximum"
        )
        dlq_depth = cw.MathExpression(
            expression="dlq + settled",
            using_metrics={"dlq": unsettled_depth, "settled": settled_depth},
            label="Dead letters (DLQ + settled)",
            period=PERIOD,
        )
        oldest = jobs_queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum")
        self.unsettled_alarm = cw.Alarm(
            self,
            "DeadLettersUnsettled",
            alarm_description=(
                "A message has waited in the DLQ for 15 minutes without being settled: its job may have no final "
                "result.json or callback. See the settle Lambda's logs, or run `whisper-worker dlq settle`."
            ),
            metric=dlq.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum"),
            threshold=UNSETTLED_SECONDS,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.dlq_alarm = cw.Alarm(
            self,
            "DlqNotEmpty",
            alarm_description=(
                "Messages reached the dead-letter queue (and, once settled, the settled-letters queue): "
                "`whisper-worker dlq list` shows each one's error_code."
            ),
            metric=dlq_depth,
            threshold=0,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.oldest_alarm = cw.Alarm(
            self,
            "OldestMessageTooOld",
            alarm_description="The oldest waiting job is older than the threshold: workers are not keeping up.",
            metric=oldest,
            threshold=oldest_message_threshold.to_seconds(),
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=5,
            datapoints_to_alarm=5,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.scaler_alarm = cw.Alarm(
            self,
            "ScalerErrors",
            alarm_description="The scaler Lambda failed: no new workers are being submitted.",
            metric=scaler.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            threshold=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=2,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.settle_alarm = cw.Alarm(
            self,
            "SettleErrors",
            alarm_description=(
                "The settle Lambda failed (configuration, webhook secret, timeout): dead letters stay in the DLQ "
                "without their final result.json and callback until it runs again."
            ),
            metric=settler.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            threshold=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        action = cw_actions.SnsAction(self.topic)
        for alarm in (self.dlq_alarm, self.unsettled_alarm, self.oldest_alarm, self.scaler_alarm, self.settle_alarm):
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
        self.failed_jobs = events.Rule(
            self,
            "WorkerJobFailed",
            description="whisper-batch: a worker job on this job queue FAILED",
            event_pattern=events.EventPattern(
                source=["aws.batch"],
                detail_type=["Batch Job State Change"],
                detail={"status": ["FAILED"], "jobQueue": [job_queue_arn]},
            ),
            targets=[targets.SnsTopic(self.topic, message=_failed_job_message())],
        )

        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.hours(6))
        self.dashboard.add_widgets(
            _graph(
                "Queue depth", [jobs_queue.metric_approximate_number_of_messages_visible(), _not_visible(jobs_queue)]
            ),
            _graph("Oldest waiting message (s)", [oldest]),
            _graph("Dead letters", [unsettled_depth, settled_depth]),
        )
        self.dashboard.add_widgets(
            _graph(
                "Jobs completed / failed / retried",
                [
                    self.worker_metric("JobsCompleted", "Sum"),
                    self.worker_metric("JobsFailed", "Sum"),  # the total, by service alone
                    self.worker_metric("JobsRetried", "Sum"),
                    self._failed_by_code(),
                ],
            ),
            _graph("Audio seconds transcribed", [self.worker_metric("AudioSeconds", "Sum")]),
            _graph("Realtime factor", [self.worker_metric("RealtimeFactor", "Average")]),
        )
        self.dashboard.add_widgets(
            _graph(
                "Seconds per job",
                [
                    self.worker_metric("ProcessingSeconds", "Average"),
                    self.worker_metric("QueueWaitSeconds", "p90"),
                    self.worker_metric("ModelLoadSeconds", "Maximum"),
                ],
            ),
            _graph(
                "Workers",
                [
                    self.worker_metric("ActiveWorkers", "Maximum"),
                    self.worker_metric("WorkersSubmitted", "Sum"),
                    self.worker_metric("ScalerHeldBack", "Maximum"),  # 1 while fast failures hold workers back
                ],
            ),
            _graph("Scaler errors", [scaler.metric_errors(period=DASHBOARD_PERIOD)]),
        )

    @property
    def dashboard_url(self) -> str:
        return (
            f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
            f"#dashboards:name={self.dashboard.dashboard_name}"
        )

    def worker_metric(self, name: str, statistic: str) -> cw.Metric:
        return cw.Metric(
            namespace=self.namespace,
            metric_name=name,
            dimensions_map={"service": SERVICE_NAME},
            statistic=statistic,
            period=DASHBOARD_PERIOD,
        )

    def _failed_by_code(self) -> cw.MathExpression:
        """JobsFailed carries ``error_code`` as well as ``service``: one line per error code."""
        return cw.MathExpression(
            expression=(
                f'SEARCH(\'{{{self.namespace},error_code,service}} MetricName="JobsFailed" '
                f"service=\"{SERVICE_NAME}\"', 'Sum', {DASHBOARD_PERIOD.to_seconds()})"
            ),
            label="JobsFailed",
            using_metrics={},
            period=DASHBOARD_PERIOD,
        )


def _failed_job_message() -> events.RuleTargetInput:
    field = events.EventField.from_path
    return events.RuleTargetInput.from_text(
        f"whisper-batch worker job {field('$.detail.jobName')} ({field('$.detail.jobId')}) FAILED: "
        f"{field('$.detail.statusReason')}. Messages it held return to the queue after their visibility timeout; "
        "after repeated fast failures the scaler holds back new workers (its log says why)."
    )


def _not_visible(queue: sqs.IQueue) -> cw.Metric:
    return queue.metric_approximate_number_of_messages_not_visible(label="in flight")


def _graph(title: str, metrics: list[cw.IMetric]) -> cw.GraphWidget:
    return cw.GraphWidget(title=title, left=metrics, width=8, height=6)
