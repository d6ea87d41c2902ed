"""The loopback proxy the benchmark puts between the worker and the embedded AWS: latency added to every request,
every request counted by AWS operation, moto's server in a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx

from worker import aws
from worker.local.moto_server import LocalAws
from worker.local.proxy import LoopbackProxy


def test_requests_are_delayed_and_counted_by_operation() -> None:
    with LocalAws(own_process=True) as local:
        assert local.resources is not None
        proxy = LoopbackProxy(local.resources.endpoint_url, latency=0.05)
        try:
            s3 = aws.client("s3", region="us-east-1", endpoint_url=proxy.url)
            sqs = aws.client("sqs", region="us-east-1", endpoint_url=proxy.url)
            bucket, queue = local.resources.bucket, local.resources.queue_url
            started = time.perf_counter()
            s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"hello")
            took = time.perf_counter() - started
            assert s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"hello"
            s3.head_object(Bucket=bucket, Key="a/b.txt")
            s3.delete_object(Bucket=bucket, Key="a/b.txt")
            sqs.send_message(QueueUrl=queue, MessageBody="x")
            [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            assert took >= 0.05
            assert dict(proxy.counts) == {
                "s3.PutObject": 1,
                "s3.GetObject": 1,
                "s3.HeadObject": 1,
                "s3.DeleteObject": 1,
                "sqs.SendMessage": 1,
                "sqs.ReceiveMessage": 1,
                "sqs.DeleteMessage": 1,
            }
        finally:
            proxy.close()


def test_the_proxy_runs_as_its_own_process_and_reports_its_counts() -> None:
    with LocalAws() as local:
        assert local.resources is not None
        command = [sys.executable, "-m", "worker.local.proxy", "--upstream", local.resources.endpoint_url]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            s3 = aws.client("s3", region="us-east-1", endpoint_url=url)
            s3.put_object(Bucket=local.resources.bucket, Key="k", Body=b"1")
            assert httpx.get(f"{url}/_proxy/counts").json() == {"s3.PutObject": 1}
            assert json.loads(httpx.post(f"{url}/_proxy/reset").text) == {}
        finally:
            process.terminate()
            process.wait(timeout=10)
