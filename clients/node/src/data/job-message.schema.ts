// Generated from job-message.schema.json by scripts/gen-data.mjs (npm run build, npm run sync): do not edit.
export const JOB_MESSAGE_SCHEMA: Record<string, unknown> = {
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$defs": {
    "Subtitles": {
      "additionalProperties": false,
      "description": "How SRT and WebVTT cues are cut and timed (broadcast-style defaults); JSON, TSV and TXT ignore it.",
      "properties": {
        "style": {
          "default": "readable",
          "description": "readable: cues built from word timings to the limits below; segments: one cue per Whisper segment, exactly as earlier versions wrote them (the other subtitle options are then ignored).",
          "enum": [
            "readable",
            "segments"
          ],
          "title": "Style",
          "type": "string"
        },
        "max_line_width": {
          "default": 42,
          "description": "Most characters on one line.",
          "maximum": 200,
          "minimum": 10,
          "title": "Max Line Width",
          "type": "integer"
        },
        "max_line_count": {
          "default": 2,
          "description": "Most lines in one cue.",
          "maximum": 4,
          "minimum": 1,
          "title": "Max Line Count",
          "type": "integer"
        },
        "min_duration": {
          "default": 1,
          "description": "Shortest time a cue stays on screen, seconds.",
          "maximum": 10,
          "minimum": 0,
          "title": "Min Duration",
          "type": "number"
        },
        "max_duration": {
          "default": 7,
          "description": "Longest time a cue stays on screen, seconds.",
          "maximum": 30,
          "minimum": 1,
          "title": "Max Duration",
          "type": "number"
        },
        "max_chars_per_second": {
          "default": 20,
          "description": "Reading speed, characters a second: a cue stays on screen (into the pause after it) that long.",
          "exclusiveMinimum": 0,
          "maximum": 100,
          "title": "Max Chars Per Second",
          "type": "number"
        },
        "min_gap": {
          "default": 0.08,
          "description": "Least time between two cues, seconds.",
          "maximum": 1,
          "minimum": 0,
          "title": "Min Gap",
          "type": "number"
        },
        "speaker_labels": {
          "anyOf": [
            {
              "enum": [
                "changes",
                "every_cue",
                "none"
              ],
              "type": "string"
            },
            {
              "type": "null"
            }
          ],
          "default": null,
          "description": "Visible speaker names in diarized subtitles: changes (a cue where the speaker changes), every_cue, or none. null: every_cue in SRT, which has no markup for voices, so the text is the only place a player shows who speaks; none in WebVTT, whose voice spans (<v SPEAKER_00>) name the speaker of every cue.",
          "title": "Speaker Labels"
        },
        "highlight_words": {
          "default": false,
          "description": "Underline each word while it is spoken (karaoke style): one cue per word in SRT and WebVTT.",
          "title": "Highlight Words",
          "type": "boolean"
        }
      },
      "title": "Subtitles",
      "type": "object"
    },
    "Vad": {
      "additionalProperties": false,
      "description": "Voice activity detection's tunables; omitted fields take their defaults (faster-whisper's).",
      "properties": {
        "threshold": {
          "default": 0.5,
          "description": "Speech probability from which a 32 ms chunk counts as speech.",
          "exclusiveMaximum": 1,
          "exclusiveMinimum": 0,
          "title": "Threshold",
          "type": "number"
        },
        "min_speech_ms": {
          "default": 250,
          "description": "Shorter bursts of speech are ignored, milliseconds.",
          "maximum": 10000,
          "minimum": 0,
          "title": "Min Speech Ms",
          "type": "integer"
        },
        "min_silence_ms": {
          "default": 2000,
          "description": "A pause this long ends a stretch of speech, milliseconds.",
          "maximum": 60000,
          "minimum": 0,
          "title": "Min Silence Ms",
          "type": "integer"
        },
        "speech_pad_ms": {
          "default": 400,
          "description": "Audio kept on each side of every stretch of speech, milliseconds.",
          "maximum": 5000,
          "minimum": 0,
          "title": "Speech Pad Ms",
          "type": "integer"
        }
      },
      "title": "Vad",
      "type": "object"
    }
  },
  "additionalProperties": false,
  "dependentSchemas": {
    "max_speakers": {
      "anyOf": [
        {
          "properties": {
            "max_speakers": {
              "type": "null"
            }
          }
        },
        {
          "properties": {
            "diarize": {
              "const": true
            },
            "speakers": {
              "type": "null"
            }
          },
          "required": [
            "diarize"
          ]
        }
      ]
    },
    "min_speakers": {
      "anyOf": [
        {
          "properties": {
            "min_speakers": {
              "type": "null"
            }
          }
        },
        {
          "properties": {
            "diarize": {
              "const": true
            },
            "speakers": {
              "type": "null"
            }
          },
          "required": [
            "diarize"
          ]
        }
      ]
    },
    "speakers": {
      "anyOf": [
        {
          "properties": {
            "speakers": {
              "type": "null"
            }
          }
        },
        {
          "properties": {
            "diarize": {
              "const": true
            }
          },
          "required": [
            "diarize"
          ]
        }
      ]
    }
  },
  "description": "One transcription job: the JSON body of an SQS message (contract version 1).",
  "properties": {
    "version": {
      "const": 1,
      "default": 1,
      "description": "Contract version; always 1. Optional, defaults to 1.",
      "title": "Version",
      "type": "integer"
    },
    "job_id": {
      "description": "Caller's id for the job, 1-128 ASCII letters, digits, '_' or '-'. Results are written under results/<job_id>/ and it is echoed in the result and callback.",
      "pattern": "^[A-Za-z0-9_-]{1,128}$",
      "title": "Job Id",
      "type": "string"
    },
    "audio": {
      "description": "Where to fetch the audio: s3://bucket/key, or an https:// (or http://, if the worker allows it) URL.",
      "maxLength": 2048,
      "title": "Audio",
      "type": "string"
    },
    "model": {
      "anyOf": [
        {
          "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$",
          "type": "string"
        },
        {
          "type": "null"
        }
      ],
      "default": null,
      "description": "Whisper model name, case-insensitive; null means the worker's configured default. Official models: tiny, tiny.en, base, base.en, small, small.en, medium, medium.en, large-v1, large-v2, large-v3, large, large-v3-turbo, turbo. A worker may also serve custom names.",
      "title": "Model"
    },
    "formats": {
      "description": "Transcript formats to write, case-insensitive, duplicates dropped; at least one. Defaults to [\"json\"].",
      "items": {
        "enum": [
          "json",
          "srt",
          "vtt",
          "txt",
          "tsv"
        ],
        "type": "string"
      },
      "minItems": 1,
      "title": "Formats",
      "type": "array"
    },
    "language": {
      "anyOf": [
        {
          "pattern": "^[a-z]{2,3}$|^[a-z ]{4,20}$",
          "type": "string"
        },
        {
          "type": "null"
        }
      ],
      "default": null,
      "description": "Spoken language as a 2-3 letter code (en, de, haw) or a Whisper language name (english), case-insensitive, one of the languages Whisper knows (names are stored as codes); null means detect it.",
      "title": "Language"
    },
    "task": {
      "default": "transcribe",
      "description": "transcribe: text in the spoken language; translate: English translation.",
      "enum": [
        "transcribe",
        "translate"
      ],
      "title": "Task",
      "type": "string"
    },
    "word_timestamps": {
      "default": false,
      "description": "Whether to compute per-word timings.",
      "title": "Word Timestamps",
      "type": "boolean"
    },
    "initial_prompt": {
      "anyOf": [
        {
          "maxLength": 1000,
          "type": "string"
        },
        {
          "type": "null"
        }
      ],
      "default": null,
      "description": "Text to condition the first window on (spellings, names, style); at most 1000 characters.",
      "title": "Initial Prompt"
    },
    "beam_size": {
      "anyOf": [
        {
          "maximum": 10,
          "minimum": 1,
          "type": "integer"
        },
        {
          "type": "null"
        }
      ],
      "default": null,
      "description": "Beam search width, 1-10; null means the worker's default decoding.",
      "title": "Beam Size"
    },
    "diarize": {
      "default": false,
      "description": "Whether to label who spoke when: each segment (and word) gets a speaker such as SPEAKER_00, numbered in order of first appearance, and the result lists each speaker's talk time.",
      "title": "Diarize",
      "type": "boolean"
    },
    "speakers": {
      "anyOf": [
        {
          "maximum": 32,
          "minimum": 1,
          "type": "integer"
        },
        {
          "type": "null"
        }
      ],
      "default": null,
      "description": "Exact number of speakers, 1-32, when known; needs diarize: true and excludes min_speakers and max_speakers. null means estimate it.",
      "title": "Speakers"
    },
    "min_speakers": {
      "anyOf": [
        {
          "maximum": 32,
          "minimum": 1,
          "type": "integer"
        },
        {
          "type": "null"
        }
      ],
      "default": null,
      "description": "Fewest speakers to find, 1-32; needs diarize: true.",
      "title": "Min Speakers"
    },
    "max_speakers": {
      "anyOf": [
        {
          "maximum": 32,
          "minimum": 1,
          "type": "integer"
        },
        {
          "type": "null"
        }
      ],
      "default": null,
      "description": "Most speakers to label, 1-32, at least min_speakers; needs diarize: true. More voices than this are merged into the closest labels.",
      "title": "Max Speakers"
    },
    "vad": {
      "anyOf": [
        {
          "type": "boolean"
        },
        {
          "$ref": "#/$defs/Vad"
        }
      ],
      "default": true,
      "description": "Voice activity detection: only stretches where someone speaks are transcribed, so silence, noise, hum and music give no invented words, and result.json reports the seconds of speech found. true (the default) or an object of tunables turns it on; false transcribes every second of the audio.",
      "title": "Vad"
    },
    "subtitles": {
      "$ref": "#/$defs/Subtitles",
      "description": "How SRT and WebVTT cues are cut and timed; omitted fields take their defaults. Readable cues are cut at word timings, which the engine computes for them whatever word_timestamps says (JSON, TSV and TXT show words only when word_timestamps is true)."
    },
    "callback_url": {
      "anyOf": [
        {
          "maxLength": 2048,
          "type": "string"
        },
        {
          "type": "null"
        }
      ],
      "default": null,
      "description": "http(s) URL to POST a signed notification to when the job succeeds or fails.",
      "title": "Callback Url"
    },
    "callback_shape": {
      "default": "v1",
      "description": "The callback's shape: v1, or legacy, which adds what backends built on the legacy job shape read (transcriptionId, userId, status COMPLETED/FAILED, s3ResultUrl, durationSeconds, processingTime, and error as a message). Jobs sent in the legacy shape get legacy.",
      "enum": [
        "v1",
        "legacy"
      ],
      "title": "Callback Shape",
      "type": "string"
    },
    "progress_callback": {
      "default": false,
      "description": "Whether to also POST a signed progress event to callback_url at each state change ({\"job_id\", \"event\": \"progress\", \"state\", \"percent\"}).",
      "title": "Progress Callback",
      "type": "boolean"
    },
    "metadata": {
      "additionalProperties": true,
      "description": "Free-form JSON object echoed back in the result and callback; at most 4096 bytes as UTF-8 JSON.",
      "title": "Metadata",
      "type": "object"
    }
  },
  "required": [
    "job_id",
    "audio"
  ],
  "title": "whisper-batch job message v1",
  "type": "object",
  "$id": "urn:whisper-batch:job-message:v1"
};
