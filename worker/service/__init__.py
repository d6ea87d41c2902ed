"""The worker: a long-running loop that takes messages off the queue and runs each through its stages.

app.py        builds everything from one Settings object: the only place that makes clients
runner.py     the loop: receive, several messages at once, settle each on the queue, stop knobs and signals
pipeline.py   one message: parse → fetch → decode → transcribe → render → store → callback
settings.py   every setting, read once from the environment
errors.py     the error tree's old path: re-exports ``worker.errors`` (a leaf, so lower layers need not import this)
sqs.py        the jobs queue: receive, heartbeat, delete, dead-letter
claim.py      a leased claim per job in S3, so two workers never transcribe one job at once
fetch.py      audio from S3 or https, size-capped; netguard.py keeps URLs on public addresses
render.py     transcripts as json, srt, vtt, txt, tsv
subtitles.py  readable subtitle cues: wrapped lines, sane durations, reading speed, one speaker a cue
subtitles.py  readable subtitle cues from word timings: wrapped, one speaker each, timed for reading
store.py      results in S3 with their content types
callback.py   signed callbacks (Standard Webhooks), retried with backoff
progress.py   status.json and progress events while a job runs
interruption.py  spot interruption notices: which jobs end in time, and handing back the rest
"""
