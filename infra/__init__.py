"""AWS CDK app for whisper-batch: one stack with storage, queues, GPU Batch, scaler, monitoring and the submit API.

``cdk.json`` at the repository root runs ``python -m infra.app``; every knob is a context value there (see
``infra.config``). The Lambda sources live in ``infra/functions`` and import nothing from here.
"""
