#!/usr/bin/env bash
# The one GPU check of issue 15 (benchmarks/README.md, "GPU check"), for a lent H100 or H200 whose
# python3 has torch, numba-cuda, numpy, pyarrow, scipy, transformers and sentence-transformers. It
# needs nothing but the input exported here by `benchmarks/gpu_check.py export` and this checkout.
#
#   benchmarks/gpu_check.sh DATA [OUT]   # DATA holds words/ and/or encoder/; each part present runs
#   DEVICE=cpu PYTHON=.venv/bin/python benchmarks/gpu_check.sh firth-work/gpu-tiny firth-work/gpu-dry
#                                        # the dry run on CPU (make gpu-check-dry): every step, tiny input
#
# words/: skip-gram, CBOW and fastText (benchmarks/word2vec_vs_gensim.py --data words --device cuda
# --skip-gensim, the full benchmark corpus, its settings), then GloVe 15 epochs at x_max 100
# (benchmarks/glove_gpu.py, the co-occurrence counted here from the tokens). encoder/: the
# encoder's training pairs/s and MRR@10 before and after (benchmarks/encoder.py, 6 bench shards).
# Each step runs under a time limit (a slow kernel must not take the lease); its exit status and
# seconds go into OUT/gpu.json with the figures, its output into OUT/gpu-check.log.
# OUT defaults to $OUT (the device machine's folder that comes back), else ./gpu-check-out.
set -uo pipefail
DATA=${1:?usage: benchmarks/gpu_check.sh DATA [OUT]}
OUT_DIR=${2:-${OUT:-gpu-check-out}}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$OUT_DIR"
LOG=$OUT_DIR/gpu-check.log
: >"$LOG"

# firth without installing it: a namespace package `firth` whose parts are this checkout's folders
SHIM=$(mktemp -d)
trap 'rm -rf "$SHIM"' EXIT
mkdir -p "$SHIM/firth"
for part in pipelines workers schemas; do ln -s "$PWD/$part" "$SHIM/firth/$part"; done
export PYTHONPATH="$SHIM:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

if [ "$DEVICE" = cuda ]; then
    W2V=(--device cuda) GLOVE=(--device cuda) ENCODER=(--device cuda --train-pairs 20000)
    LIMITS=(w2v 90 glove 150 encoder 300)  # seconds per step: each part within 8 minutes, both within the lease
    nvidia-smi >>"$LOG" 2>&1
else  # the dry run: the same steps on CPU, the CUDA kernel of GloVe in numba's simulator
    W2V=(--device cpu) GLOVE=(--device sim --epochs 1 --max-entries 2000)
    ENCODER=(--device cpu --trainer local --train-pairs 32 --batch-size 8 --eval-docs 20 --embed-docs 16 --rounds 1)
    LIMITS=(w2v 300 glove 300 encoder 600)
fi
limit() { local i; for ((i = 0; i < ${#LIMITS[@]}; i += 2)); do [ "${LIMITS[i]}" = "$1" ] && echo "${LIMITS[i+1]}"; done; }

STEPS=""
step() {  # step NAME KIND COMMAND...: run under KIND's time limit, output to the log, status into STEPS
    local name=$1 kind=$2 start=$SECONDS rc
    shift 2
    echo "=== $name: $*" | tee -a "$LOG"
    timeout "$(limit "$kind")" "$@" >>"$LOG" 2>&1
    rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG"
    STEPS+="${STEPS:+, }\"$name\": {\"exit\": $rc, \"seconds\": $((SECONDS - start))}"
}

if [ -d "$DATA/words" ]; then
    for model in sg cbow fasttext; do
        step "$model" w2v "$PY" benchmarks/word2vec_vs_gensim.py --data "$DATA/words" "${W2V[@]}" --skip-gensim \
            --models "$model"
    done
    step glove glove "$PY" benchmarks/glove_gpu.py --data "$DATA/words" "${GLOVE[@]}" --x-max 100 \
        --out "$OUT_DIR/glove.json"
fi
if [ -d "$DATA/encoder" ]; then
    step encoder encoder "$PY" benchmarks/encoder.py "$DATA/encoder/corpus" --model "$DATA/encoder/model" \
        "${ENCODER[@]}" --out "$OUT_DIR/encoder.json"
fi
NAME=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')")
"$PY" benchmarks/gpu_check.py collect --log "$LOG" --glove "$OUT_DIR/glove.json" --encoder "$OUT_DIR/encoder.json" \
    --steps "{$STEPS}" --device-name "$NAME ($DEVICE)" --out "$OUT_DIR/gpu.json" | tail -n 40
rm -f "$OUT_DIR/glove.json" "$OUT_DIR/encoder.json"  # inside gpu.json now
