"""Alarms and failed worker jobs (Batch's own "Batch Job State Change" events) to an SNS topic, and the service
dashboard. docs/operate/index.md says what to do when each alarm fires.

Alarms: dead letters, unsettled dead letters, the oldest waiting message, the scaler (errors, throttles, missing
runs, held back by fast worker failures), the settle Lambda's errors, callbacks not delivered (a metric filter on
the worker's "callback not delivered" log line), workers running without a break for hours (a cost guard) and,
with the HTTPS API, its 5XX answers and the status Lambda's errors.

The worker publishes CloudWatch EMF metrics in the configured namespace, each with dimension
``service=whisper-batch``: JobsCompleted, JobsFailed (also by ``error_code``), JobsRetried, AudioSeconds,
ProcessingSeconds, RealtimeFactor, QueueWaitSeconds, ModelLoadSeconds. The scaler adds ActiveWorkers,
WorkersSubmitted and ScalerHeldBack.
"""

from __future__ import annotations

from aws_cdk import Annotations, Aws, Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
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
# The scaler runs every minute: fewer than 3 runs in each of three 5-minute periods (or none at all) means its
# schedule or the function is broken. A new stack has no runs before it exists, so this fires once right after the
# first deploy and clears within 10 minutes.
SCALER_MIN_RUNS_PER_5_MINUTES = 3
# The scaler's fast-failure back-off (functions/scaler_logic.py) cools down for 10 minutes after each crash and
# probes with one worker at a time: held back for this long, no probe has worked and jobs are not being served.
HELD_BACK_MINUTES = 30
CALLBACK_NOT_DELIVERED = "callback not delivered"  # the worker's log message (worker/service/pipeline.py)
CALLBACKS_NOT_DELIVERED_METRIC = "CallbacksNotDelivered"
# 4 callbacks not delivered in 15 minutes: one receiver hiccup is retried by the worker; a pattern is an outage.
CALLBACK_FAILURES_PER_15_MINUTES = 4
API_5XX_PER_5_MINUTES = 5


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
        worker_log_group: logs.ILogGroup,
        worker_hours_alarm: int,
        alarm_email: str | None = None,
        alarm_topic_arn: str | None = None,
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
        self._actions: list[cw.IAlarmAction] = [cw_actions.SnsAction(self.topic)]
        self.external_topic = (
            sns.Topic.from_topic_arn(self, "ExternalTopic", alarm_topic_arn) if alarm_topic_arn else None
        )
        if self.external_topic is not None:
            self._actions.append(cw_actions.SnsAction(self.external_topic))

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
        self.scaler_throttled_alarm = self._alarm(
            "ScalerThrottled",
            "The scaler Lambda was throttled (its reserved concurrency of 1 was taken, or the account's Lambda "
            "concurrency ran out): rounds are being skipped.",
            scaler.metric_throttles(period=Duration.minutes(5), statistic="Sum"),
            threshold=1,
            periods=2,
        )
        self.scaler_missing_alarm = self._alarm(
            "ScalerNotRunning",
            "The scaler ran fewer than 3 times in each of the last three 5-minute periods (it should run every "
            "minute): its EventBridge schedule is disabled or deleted, or the function cannot start. Nothing submits "
            "workers. (Right after the first deploy it fires once, until the first runs are counted.)",
            scaler.metric_invocations(period=Duration.minutes(5), statistic="Sum"),
            threshold=SCALER_MIN_RUNS_PER_5_MINUTES,
            periods=3,
            comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            missing=cw.TreatMissingData.BREACHING,
        )
        self.held_back_alarm = self._alarm(
            "ScalerHeldBack",
            f"For {HELD_BACK_MINUTES} minutes the scaler has held worker submissions back because worker jobs keep "
            "failing within 5 minutes of starting (bad image, unreadable secret, a model it cannot load). The "
            "scaler's log line 'holding back worker submissions' names the latest job and its statusReason.",
            self.worker_metric("ScalerHeldBack", "Minimum", Duration.minutes(HELD_BACK_MINUTES)),
            threshold=1,
        )
        self.callbacks_alarm = self._alarm(
            "CallbacksNotDelivered",
            "Workers gave up delivering result callbacks (after their retries) 4 or more times in 15 minutes: the "
            "receiver is down, refuses the signature, or is not reachable. Each result.json's `callback` records it.",
            self._callbacks_not_delivered(worker_log_group),
            threshold=CALLBACK_FAILURES_PER_15_MINUTES,
        )
        self.worker_hours_alarm = self._alarm(
            "WorkersRunningLong",
            f"At least one worker has been running, without a break, for {worker_hours_alarm} hours: a cost guard. "
            "Check the queue drains and workers exit after their idle time; a steady load may simply need a higher "
            "workerHoursAlarm.",
            self.worker_metric("ActiveWorkers", "Minimum", Duration.hours(1)),
            threshold=1,
            periods=worker_hours_alarm,
        )
        for alarm in (self.dlq_alarm, self.unsettled_alarm, self.oldest_alarm, self.scaler_alarm, self.settle_alarm):
            self._notify(alarm)
        self.failed_jobs = events.Rule(
            self,
            "WorkerJobFailed",
            description="whisper-batch: a worker job on this job queue FAILED",
            event_pattern=events.EventPattern(
                source=["aws.batch"],
                detail_type=["Batch Job State Change"],
                detail={"status": ["FAILED"], "jobQueue": [job_queue_arn]},
            ),
            targets=[
                targets.SnsTopic(topic, message=_failed_job_message())
                for topic in (self.topic, self.external_topic)
                if topic is not None
            ],
        )
        if self.external_topic is not None:
            # An imported topic has no environment CDK can compare; alarmTopicArn must be in the stack's region
            # (CloudWatch alarm actions require it), which docs/operate says.
            Annotations.of(self.failed_jobs).acknowledge_warning(
                "@aws-cdk/aws-events:ruleUnresolvedEnvironment", "alarmTopicArn is in the stack's own region"
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

    def watch_api(self, api: apigw.RestApi, status: lambda_.IFunction) -> None:
        """Alarms on the HTTPS API: answers 5XX (queue refused, integration broken) and the status Lambda's errors."""
        self.api_5xx_alarm = self._alarm(
            "Api5xx",
            "The HTTPS API answered 5XX 5 or more times in 5 minutes: SendMessage to the jobs queue is failing (its "
            "role, the queue, KMS) or the status Lambda is. See the API's access log and the status Lambda's log.",
            api.metric_server_error(period=Duration.minutes(5), statistic="Sum"),
            threshold=API_5XX_PER_5_MINUTES,
        )
        self.status_alarm = self._alarm(
            "StatusErrors",
            "The status Lambda (GET /jobs/{job_id}) failed: callers get 502. See its log group.",
            status.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            threshold=1,
        )

    def _alarm(
        self,
        id: str,
        description: str,
        metric: cw.IMetric,
        *,
        threshold: float,
        periods: int = 1,
        comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
    ) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=periods,
            treat_missing_data=missing,
        )
        self._notify(alarm)
        return alarm

    def _notify(self, alarm: cw.Alarm) -> None:
        for action in self._actions:
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)

    def _callbacks_not_delivered(self, worker_log_group: logs.ILogGroup) -> cw.IMetric:
        """Counted from the worker's JSON log line: the worker publishes no metric for it."""
        logs.MetricFilter(
            self,
            "CallbacksNotDeliveredFilter",
            log_group=worker_log_group,
            filter_pattern=logs.FilterPattern.string_value("$.message", "=", CALLBACK_NOT_DELIVERED),
            metric_namespace=self.namespace,
            metric_name=CALLBACKS_NOT_DELIVERED_METRIC,
            metric_value="1",
            default_value=0,
        )
        return cw.Metric(
            namespace=self.namespace,
            metric_name=CALLBACKS_NOT_DELIVERED_METRIC,
            statistic="Sum",
            period=Duration.minutes(15),
        )

    @property
    def dashboard_url(self) -> str:
        return (
            f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
            f"#dashboards:name={self.dashboard.dashboard_name}"
        )

    def worker_metric(self, name: str, statistic: str, period: Duration = DASHBOARD_PERIOD) -> cw.Metric:
        return cw.Metric(
            namespace=self.namespace,
            metric_name=name,
            dimensions_map={"service": SERVICE_NAME},
            statistic=statistic,
            period=period,
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
