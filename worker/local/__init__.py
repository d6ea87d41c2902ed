"""Local stand-ins for the demo and the tests.

moto_server.py   moto's server for S3 and SQS on loopback, with the queue, its DLQ and the bucket
receiver.py      a real HTTP callback receiver that verifies signatures
demo.py          ``whisper-worker demo``: files in, transcripts out, through the real worker loop
proxy.py         a loopback proxy before the embedded AWS: latency, request counts, injected answers
"""
