"""whisper-batch: SQS messages in, Whisper transcripts in S3 and signed callbacks out.

    errors.py   the error tree (each failure's code, permanent or transient), WorkerUnfit, SettingsError: a leaf
    transcript.py  Transcript, Segment, Word: what the engines return and diarization and the renderers read; a leaf
    limits.py   numbers the worker and the stack share (sample rate, the decoded-audio budget, runtime windows); a leaf
    sample.py   the speech sample the demo and the smoke test send (source tree only, not in the wheel); a leaf
    contract/   the job message (pydantic), its JSON Schema, Whisper's languages: shared by every side
    client/     for backends: TranscriptionClient, the CLI's backend commands, prices, the dead-letter queue
    aws.py      boto3 clients, AWS error codes, SQS limits: one of each for the client and the worker
    addresses.py  which addresses a job's URLs may reach (public unicast only), standard library only
    webhooks.py   Standard Webhooks ids, signatures and a signed POST, standard library only (the settle Lambda)
    audio/      audio in: decoding to 16 kHz mono in child processes, the decoded-audio budget, WAV files
    engine/     Whisper: one Engine protocol; the reference transcribe() loop, the batched engine, its backends
    diarization/  who spoke when: speaker turns (Silero VAD, CAM++ embeddings, clustering or pyannote) on a transcript
    models/     model weights: resolving names, bundled packages, CTranslate2 conversion, verified downloads
    service/    the worker: the receive loop, one message's pipeline and its stages (fetch, render, store, ...)
    ops/        operating it: JSON logs, redaction and EMF metrics (leaves), health checks and the models/health CLI
    local/      the local stand-ins: moto's server for S3 and SQS, a callback receiver, the demo
    cli.py      ``whisper-worker``: every command, importing only what each needs

The bare install is the client (``contract``, ``client``, ``aws``, ``addresses``, ``webhooks``); the worker extra adds
the rest.

Layers point down, checked by ``lint-imports`` (pyproject.toml's ``[tool.importlinter]``), imports inside functions
included; modules of one layer joined by ``|`` do not import each other:

    cli → local | ops.cli → ops.health → service | client → engine | diarization → audio | models → contract
    → the leaves: errors, transcript, limits, sample, ops.logs, ops.redact, ops.metrics, aws, webhooks, addresses

``worker.service.errors``, ``worker.service.settings.SettingsError`` and ``worker.engine.transcript`` still work:
they re-export the leaves.
"""
