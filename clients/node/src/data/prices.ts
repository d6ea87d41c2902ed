// Generated from prices.json by scripts/gen-data.mjs (npm run build, npm run sync): do not edit.
export const PRICES_DATA: unknown = {
  "about": "Prices and throughput figures for cost estimates, read by the Python client (worker/client/pricing.py) and the Node.js client (clients/node). Throughput is audio seconds per wall-clock second of one worker. Estimates derive a model's throughput on an instance from the instance's reference figure and the models' relative speeds; measured figures win over the derivation.",
  "model_family": {
    "tiny": "tiny",
    "tiny.en": "tiny",
    "base": "base",
    "base.en": "base",
    "small": "small",
    "small.en": "small",
    "medium": "medium",
    "medium.en": "medium",
    "large": "large",
    "large-v1": "large",
    "large-v2": "large",
    "large-v3": "large",
    "turbo": "turbo",
    "large-v3-turbo": "turbo"
  },
  "gpu_relative_speed": {
    "source": "openai-whisper's README, 'Available models and languages', column 'Relative speed' (A100, English speech; openai-whisper 20250625); relative to large",
    "speeds": {
      "tiny": 10,
      "base": 7,
      "small": 4,
      "medium": 2,
      "large": 1,
      "turbo": 8
    }
  },
  "cpu_parameters_millions": {
    "source": "the same README table; on a CPU (compute-bound) speed is taken as inversely proportional to the parameter count, relative to tiny",
    "parameters": {
      "tiny": 39,
      "base": 74,
      "small": 244,
      "medium": 769,
      "large": 1550,
      "turbo": 809
    }
  },
  "gpu_anchor": {
    "source": "faster-whisper's README, 'Large-v2 model on GPU': openai-whisper large-v2, fp16, beam 5, 13 min of audio in 2 min 23 s on an RTX 3070 Ti 8 GB (608 GB/s). Instances scale it by memory bandwidth, which bounds batch-1 decoding: a crude proxy. The worker decodes greedily by default, faster than beam 5: the estimates are cautious.",
    "audio_seconds": 780,
    "wall_seconds": 143,
    "bandwidth_gbs": 608
  },
  "estimate_note": "estimate, to be replaced by measured numbers",
  "instances": {
    "source": "On-demand: AWS EC2 on-demand price list, us-east-1, Linux (check it for your region). Spot: a typical us-east-1 spot price, an approximation only (spot prices move hourly and by zone; `aws ec2 describe-spot-price-history` gives today's). USD per hour.",
    "types": {
      "c6a.large": {
        "accelerator": null,
        "reference_family": "tiny",
        "reference_throughput": 13.1,
        "on_demand_hourly": 0.0765,
        "spot_hourly": 0.035,
        "note": "estimate: tiny.en's figure measured on the development machine (AMD EPYC, 2 cores, torch 2.13.0+cpu, device cpu; bench/results/cpu-dev-corpus.json), taken as this instance's (2 vCPU AMD EPYC, generation not known); no c6a.large has been measured"
      },
      "g4dn.xlarge": {
        "accelerator": "NVIDIA T4",
        "reference_family": "large",
        "bandwidth_gbs": 320,
        "on_demand_hourly": 0.526,
        "spot_hourly": 0.22
      },
      "g5.xlarge": {
        "accelerator": "NVIDIA A10G",
        "reference_family": "large",
        "bandwidth_gbs": 600,
        "on_demand_hourly": 1.006,
        "spot_hourly": 0.42
      },
      "g6.xlarge": {
        "accelerator": "NVIDIA L4",
        "reference_family": "large",
        "bandwidth_gbs": 300,
        "on_demand_hourly": 0.8048,
        "spot_hourly": 0.36,
        "note": "its extra compute helps the encoder only"
      },
      "p3.2xlarge": {
        "accelerator": "NVIDIA V100",
        "reference_family": "large",
        "bandwidth_gbs": 900,
        "on_demand_hourly": 3.06,
        "spot_hourly": 0.95
      }
    }
  },
  "measured": [
    {
      "instance": "development machine",
      "family": "tiny",
      "times_realtime": 13.1,
      "machine": "AMD EPYC, 2 cores, torch 2.13.0+cpu, device cpu",
      "source": "bench/results/cpu-dev-corpus.json",
      "note": "measured: tiny.en through the whole worker on the development machine (AMD EPYC, 2 cores, torch 2.13.0+cpu, device cpu), not on an EC2 instance"
    }
  ],
  "managed": [
    {
      "name": "OpenAI whisper-1",
      "usd_per_minute": 0.006,
      "source": "openai.com/api/pricing, as of 2026"
    },
    {
      "name": "Amazon Transcribe",
      "usd_per_minute": 0.024,
      "source": "aws.amazon.com/transcribe/pricing, us-east-1, as of 2026"
    }
  ]
};
