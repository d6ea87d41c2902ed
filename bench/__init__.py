"""Throughput benchmark (``make bench``): one corpus through openai-whisper, faster-whisper, our engine and our
worker, side by side, with speed, WER and peak memory in one table.

* ``corpus``: builds the synthetic corpus (espeak-ng, text from ``texts``) or reads a directory of audio + .txt;
* ``run``: the command line; one child process per system, peak RSS from ``os.wait4``;
* ``systems``: what runs inside each child (``worker_system`` for the end-to-end worker);
* ``wer`` and ``report``: scoring and the table.

Other corpora and views: ``hard`` makes a hard tier from real clips (noise at 0 and 5 dB SNR, quiet, fast,
clipped), where Whisper falls back to sampling; ``non_speech`` and ``non_speech_run`` the silence, noise, hum and
music tier; ``engine_profile`` splits one pass's time (mel, encoder, decoder) per precision; ``word_timings`` the
cost and agreement of the engines' word alignment against ``transcribe()``'s.

Speaker diarization (``python -m bench.diarization``): DER, cpWER and speed on multi-speaker recordings
(``references``: RTTM, STM, per-speaker text) and on conversations assembled from single-speaker clips
(``conversations``), scored in ``diarization_scores`` and tabled in ``diarization_report``. The worker's end-to-end
cost of diarizing is the ``worker-diarize`` system of ``run`` (``--diarize``).
"""
