"""Lambda sources, shipped as one asset: ``functions.scaler.handler`` and ``functions.job_status.handler``.

They run on the Lambda Python runtime with boto3 and the bundled aws-lambda-powertools; nothing here imports
``infra`` or ``worker``.
"""
