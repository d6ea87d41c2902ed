"""whisper-batch: queue-driven Whisper transcription worker."""
