"""whisper-batch: SQS messages in, Whisper transcripts in S3 and signed callbacks out.

    contract/   the job message (pydantic), its JSON Schema, Whisper's languages: shared by every side
    client/     for backends: TranscriptionClient, the CLI's backend commands, prices, the dead-letter queue
    aws.py      boto3 clients, AWS error codes, SQS limits: one of each for the client and the worker
    addresses.py  which addresses a job's URLs may reach (public unicast only), standard library only
    webhooks.py   Standard Webhooks ids, signatures and a signed POST, standard library only (the settle Lambda)
    audio/      audio in: decoding to 16 kHz mono in child processes, the decoded-audio budget, WAV files
    engine/     Whisper: one Engine protocol; the reference transcribe() loop, the batched engine, its backends
    models/     model weights: resolving names, bundled packages, CTranslate2 conversion, verified downloads
    service/    the worker: the receive loop, one message's pipeline and its stages (fetch, render, store, ...)
    ops/        operating it: JSON logs, EMF metrics, health checks, the models/health CLI
    local/      the local stand-ins: moto's server for S3 and SQS, a callback receiver, the demo
    cli.py      ``whisper-worker``: every command, importing only what each needs

The bare install is the client (``contract``, ``client``, ``aws``, ``addresses``, ``webhooks``); the worker extra adds
the rest.
"""
