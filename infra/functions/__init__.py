"""Lambda sources, shipped as one asset: ``functions.scaler.handler``, ``functions.job_status.handler``,
``functions.settle.handler`` and, with ``imageBuild=codebuild``, ``functions.image_build.on_event`` and
``is_complete``.

They run on the Lambda Python runtime with boto3 and the bundled aws-lambda-powertools; nothing here imports
``infra``. The settle handler imports the few standard-library ``worker`` modules the bundle carries beside it
(``infra.functions_code.WORKER_MODULES``), so the Lambda and ``whisper-worker dlq settle`` settle alike.
"""
