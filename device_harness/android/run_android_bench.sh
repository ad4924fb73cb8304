#!/usr/bin/env bash
# pocketgan device benchmark for Android: push the ExecuTorch .pte and ONNX artifacts of
# exported bundles (and the pix2pix peer) with adb, time them with ExecuTorch's
# executor_runner and onnxruntime_perf_test, pull the logs, and convert them into
# pocketgan's benchmark schema (results.json + results.md + latency.png).
#
# Steps (building the two runners, exporting the bundles and the peer): docs/device-benchmarks.md
#
#   device_harness/android/run_android_bench.sh \
#       --bundle android_fp32 --bundle android_int8 --peers peers \
#       --et-runner cmake-android-out/executor_runner --ort-perf build/Android/Release/onnxruntime_perf_test \
#       --out android_logs [--threads 4] [--runs 20] [--repeats 2] [--serial SERIAL]
#
# --bundle: `pocketgan export --targets executorch onnx --concepts both [--precision int8] --out DIR`
# --peers:  `python -m pocketgan.bench.peers --backends executorch onnx --precisions fp32 int8 --out DIR`
set -euo pipefail

COMMAND="$0 $*"
BUNDLES=()
PEERS=""
ET_RUNNER=""
ORT_PERF=""
OUT="android_logs"
THREADS=4
RUNS=20
REPEATS=2
SERIAL=""
PYTHON="${PYTHON:-python3}"
REMOTE=/data/local/tmp/pocketgan-bench

usage() { sed -n '2,17p' "$0"; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bundle) BUNDLES+=("$2"); shift 2 ;;
    --peers) PEERS="$2"; shift 2 ;;
    --et-runner) ET_RUNNER="$2"; shift 2 ;;
    --ort-perf) ORT_PERF="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    --serial) SERIAL="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 ;;
  esac
done
[[ ${#BUNDLES[@]} -gt 0 ]] || { echo "name at least one --bundle" >&2; exit 2; }
[[ -n "$ET_RUNNER" || -n "$ORT_PERF" ]] || { echo "name --et-runner and/or --ort-perf" >&2; exit 2; }

ADB=(adb)
[[ -n "$SERIAL" ]] && ADB=(adb -s "$SERIAL")
mkdir -p "$OUT"
: > "$OUT/files.tsv"

# toybox `time -v` prints "Max RSS (KiB)" to stderr; every log ends with it
TIME="toybox time -v"
"${ADB[@]}" shell "toybox time -v true" >/dev/null 2>&1 || TIME=""

"${ADB[@]}" shell "rm -rf $REMOTE && mkdir -p $REMOTE/bin"
[[ -n "$ET_RUNNER" ]] && "${ADB[@]}" push "$ET_RUNNER" "$REMOTE/bin/executor_runner" >/dev/null
[[ -n "$ORT_PERF" ]] && "${ADB[@]}" push "$ORT_PERF" "$REMOTE/bin/onnxruntime_perf_test" >/dev/null
# onnxruntime_perf_test built with --build_shared_lib needs libonnxruntime.so next to it
if [[ -n "$ORT_PERF" && -f "$(dirname "$ORT_PERF")/libonnxruntime.so" ]]; then
  "${ADB[@]}" push "$(dirname "$ORT_PERF")/libonnxruntime.so" "$REMOTE/bin/" >/dev/null
fi
"${ADB[@]}" shell "chmod 755 $REMOTE/bin/*"

push() {  # push LOCAL REMOTE_NAME: record its size for the report
  "${ADB[@]}" push "$1" "$REMOTE/$2" >/dev/null
  printf '%s\t%s\n' "$2" "$(wc -c < "$1" | tr -d ' ')" >> "$OUT/files.tsv"
}

run_et() {  # run_et PTE METHOD LOG
  "${ADB[@]}" shell "cd $REMOTE && LD_LIBRARY_PATH=$REMOTE/bin $TIME ./bin/executor_runner --model_path $1 \
      --method_name $2 --num_executions $((RUNS + 1)) --cpu_threads $THREADS --print_output none 2>&1" > "$3" || true
}

run_ort() {  # run_ort ONNX LOG
  "${ADB[@]}" shell "cd $REMOTE && LD_LIBRARY_PATH=$REMOTE/bin $TIME ./bin/onnxruntime_perf_test -I -m times \
      -r $RUNS -x $THREADS -y 1 -e cpu -o 99 $1 2>&1" > "$2" || true
}

# manifest fields, read on the host (python3 with no extra packages)
manifest() {  # manifest BUNDLE EXPR
  "$PYTHON" -c 'import json,sys; m=json.load(open(sys.argv[1]+"/manifest.json")); print(eval(sys.argv[2]))' "$1" "$2"
}

for r in $(seq 1 "$REPEATS"); do
  for b in "${BUNDLES[@]}"; do
    size=$(manifest "$b" 'm["io"]["input"]["shape"][-1]')
    concepts=$(manifest "$b" '" ".join(c["name"] for c in m["concepts"])')
    tag=$(basename "$b")
    et_precision=$(manifest "$b" 'm["targets"].get("executorch", {}).get("precision", "")')
    if [[ -n "$ET_RUNNER" && -n "$et_precision" ]]; then
      for mode in separate merged; do
        key=program
        [[ $mode == merged ]] && key=merged_program
        rel=$(manifest "$b" 'm["targets"]["executorch"].get("'"$key"'", "")')
        [[ -z "$rel" ]] && continue
        [[ $r == 1 ]] && push "$b/$rel" "$tag/$rel"
        for c in $concepts; do
          echo "[$r/$REPEATS] executorch $et_precision $mode ${size}² $c"
          run_et "$tag/$rel" "$c" "$OUT/pocketgan__executorch__${et_precision}__${mode}__${size}__${c}__r${r}.log"
        done
      done
    fi
    ort_precision=$(manifest "$b" 'm["targets"].get("onnx", {}).get("precision", "")')
    if [[ -n "$ORT_PERF" && -n "$ort_precision" ]]; then
      # separate: the base graph with its concept inputs at their defaults (same work as with an adapter applied;
      # onnxruntime_perf_test cannot load .onnx_adapter files)
      rel=$(manifest "$b" 'm["targets"]["onnx"].get("model", "")')
      if [[ -n "$rel" ]]; then
        [[ $r == 1 ]] && push "$b/$rel" "$tag/$rel"
        first=${concepts%% *}
        echo "[$r/$REPEATS] onnx $ort_precision separate ${size}²"
        run_ort "$tag/$rel" "$OUT/pocketgan__onnx__${ort_precision}__separate__${size}__${first}__r${r}.log"
      fi
      for c in $concepts; do
        rel=$(manifest "$b" 'm["targets"]["onnx"].get("merged", {}).get("'"$c"'", "")')
        [[ -z "$rel" ]] && continue
        [[ $r == 1 ]] && push "$b/$rel" "$tag/$rel"
        echo "[$r/$REPEATS] onnx $ort_precision merged ${size}² $c"
        run_ort "$tag/$rel" "$OUT/pocketgan__onnx__${ort_precision}__merged__${size}__${c}__r${r}.log"
      done
    fi
  done
  if [[ -n "$PEERS" ]]; then
    for f in "$PEERS"/pix2pix-executorch-*.pte "$PEERS"/pix2pix-onnx-*.onnx; do
      [[ -f "$f" ]] || continue
      name=$(basename "$f"); stem=${name%.*}
      IFS=- read -r _ backend precision size <<< "$stem"
      [[ $r == 1 ]] && push "$f" "peers/$name"
      echo "[$r/$REPEATS] pix2pix $backend $precision ${size}²"
      log="$OUT/pix2pix__${backend}__${precision}__none__${size}__-__r${r}.log"
      if [[ $backend == executorch && -n "$ET_RUNNER" ]]; then run_et "peers/$name" forward "$log"; fi
      if [[ $backend == onnx && -n "$ORT_PERF" ]]; then run_ort "peers/$name" "$log"; fi
    done
  fi
done

{
  echo "manufacturer=$("${ADB[@]}" shell getprop ro.product.manufacturer | tr -d '\r')"
  echo "model=$("${ADB[@]}" shell getprop ro.product.model | tr -d '\r')"
  echo "soc=$("${ADB[@]}" shell getprop ro.soc.model | tr -d '\r')"
  echo "hardware=$("${ADB[@]}" shell getprop ro.hardware | tr -d '\r')"
  echo "android=$("${ADB[@]}" shell getprop ro.build.version.release | tr -d '\r')"
  echo "sdk=$("${ADB[@]}" shell getprop ro.build.version.sdk | tr -d '\r')"
  echo "cores=$("${ADB[@]}" shell nproc | tr -d '\r')"
  echo "cpu_features=$("${ADB[@]}" shell "grep -m1 Features /proc/cpuinfo | cut -d: -f2" | tr -d '\r')"
  echo "mem_kib=$("${ADB[@]}" shell "grep MemTotal /proc/meminfo" | tr -dc '0-9')"
  echo "threads=$THREADS"
  echo "runs=$RUNS"
  echo "repeats=$REPEATS"
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
  echo "command=$COMMAND"
} > "$OUT/device.txt"

BUNDLE_ARGS=()
for b in "${BUNDLES[@]}"; do BUNDLE_ARGS+=(--bundle "$b"); done
"$PYTHON" -m pocketgan.bench.device android "$OUT" "${BUNDLE_ARGS[@]}" --out "$OUT"
