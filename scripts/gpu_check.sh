#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU: builds tend against ONNX Runtime's GPU build, runs
# the CUDA and TensorRT execution providers next to the CPU on FP32 / FP16 / INT8 variants of the
# PyTorch recipe's 1D CNN and of MobileNet-V2, and compares latency and accuracy.
#
#   scripts/gpu_check.sh [OUT_DIR]        (default out/gpu_check; results in OUT_DIR/summary.txt)
#
# Needs: an NVIDIA driver (nvidia-smi), the CUDA 12 runtime, cuDNN 9 and, for TensorRT, TensorRT
# 10 libraries on the loader path (LD_LIBRARY_PATH), Debian's python3-torch/torchvision/onnx, and
# either network access to the npm registry or the package already in .cache/npm. Nothing in the
# default build or tests needs any of this. Runs in a few minutes; TensorRT engine builds (first
# run of each model) dominate, and are cached under OUT_DIR/trt-cache.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
out=${1:-out/gpu_check}
py=/usr/bin/python3
die() { echo "gpu_check: error: $*" >&2; exit 2; }
log() { echo "gpu_check: $*" >&2; }

# --- 0. Is there a GPU at all? (fail fast and clearly) ------------------------------------------
command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: this script needs a machine with an NVIDIA GPU and driver"
gpus=$(nvidia-smi -L 2>/dev/null) || die "nvidia-smi failed: no usable NVIDIA GPU/driver on this machine"
[ -n "$gpus" ] || die "nvidia-smi lists no GPU"
log "GPU: $(echo "$gpus" | head -1)"
"$py" -c "import torch, torchvision, onnx, numpy" 2>/dev/null || die "$py lacks torch/torchvision/onnx/numpy (Debian: python3-torch python3-torchvision python3-onnx)"
mkdir -p "$out"

# --- 1. ONNX Runtime GPU build (same version as the CPU SDK), integrity-checked ------------------
PKG=com.github.asus4.onnxruntime.linux-x64-gpu
VER=0.4.9
SHA512="sha512-FopIhNE/Ng+v2X65wVc9clPCBCvhvA53Hxo2U0Kf5fGdVsC7iCA+mZ0KLWggcQAj7TIZ6pNidR4AC10g74Xo6w=="
CACHE="$here/.cache/npm"
SDK="$here/third_party/onnxruntime-gpu"
[ -f third_party/onnxruntime/include/onnxruntime_cxx_api.h ] || scripts/bootstrap.sh
if [ ! -f "$SDK/.complete" ]; then
  mkdir -p "$CACHE"
  tgz="$CACHE/$PKG-$VER.tgz"
  if [ ! -f "$tgz" ]; then
    command -v npm >/dev/null 2>&1 || die "npm not found and $tgz not cached"
    log "fetching $PKG@$VER with npm pack (large)"
    (cd "$CACHE" && npm pack --silent "$PKG@$VER" >/dev/null) || die "npm pack $PKG@$VER failed (no network? copy the .tgz into $CACHE)"
  fi
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  [ "$got" = "$SHA512" ] || { rm -f "$tgz"; die "integrity check failed for $tgz"; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tar -xzf "$tgz" -C "$tmp"
  core=$(find "$tmp/package" -path '*inux*' -name 'libonnxruntime.so*' -type f | head -1)
  [ -n "$core" ] || die "$PKG: no Linux libonnxruntime.so in the package"
  libdir=$(dirname "$core")
  [ -f "$libdir/libonnxruntime_providers_cuda.so" ] || die "$PKG: no libonnxruntime_providers_cuda.so next to $core"
  rm -rf "$SDK"
  mkdir -p "$SDK/include" "$SDK/lib"
  cp third_party/onnxruntime/include/*.h "$SDK/include/"
  cp "$libdir"/libonnxruntime*.so* "$SDK/lib/"
  base=$(basename "$core")
  [ "$base" = libonnxruntime.so ] || ln -sf "$base" "$SDK/lib/libonnxruntime.so"
  [ -e "$SDK/lib/libonnxruntime.so.1" ] || ln -sf libonnxruntime.so "$SDK/lib/libonnxruntime.so.1"
  echo "$VER" >"$SDK/.complete"
  rm -rf "$tmp"
  trap - EXIT
fi
export LD_LIBRARY_PATH="$SDK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# Which providers can actually load (their CUDA/cuDNN/TensorRT dependencies present)?
providers=()
for p in tensorrt cuda; do
  lib="$SDK/lib/libonnxruntime_providers_$p.so"
  if [ ! -f "$lib" ]; then log "$p: provider library not in the package, skipped"; continue; fi
  missing=$(ldd "$lib" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ')
  if [ -n "$missing" ]; then log "$p: skipped, missing libraries: $missing"; continue; fi
  providers+=("$p")
done
providers+=(cpu)
[ "${#providers[@]}" -gt 1 ] || die "neither the CUDA nor the TensorRT provider can load (CUDA 12 / cuDNN 9 / TensorRT 10 libraries missing from the loader path)"
log "providers to test: ${providers[*]}"

# --- 2. Build tend against the GPU runtime (tests and benchmarks off: only the binary) ---------
build="build-gpu"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DONNXRUNTIME_ROOT="$SDK" \
  -DTEND_BUILD_TESTS=OFF -DTEND_BUILD_BENCH=OFF >"$out/cmake.log" 2>&1 || die "cmake failed, see $out/cmake.log"
cmake --build "$build" --target tend -j "$(nproc)" >"$out/build.log" 2>&1 || die "build failed, see $out/build.log"
tend="$build/tend"
"$tend" doctor >"$out/doctor.txt" 2>&1 || true

# --- 3. Models: the recipe's CNN (trained, with validation data) and MobileNet-V2 --------------
"$py" recipes/pytorch/train_cnn.py --tend "$tend" --out "$out/cnn" --quick --threads "$(nproc)" >"$out/train.log" 2>&1 \
  || die "recipe training failed, see $out/train.log"
"$py" scripts/models/export_models.py "$out/models" --set bench >"$out/export.log" 2>&1 \
  || die "model export failed, see $out/export.log"
"$py" - "$out/models" <<'EOF'
import sys, numpy as np
rng = np.random.default_rng(0)
# Smooth random "images" normalised like ImageNet inputs: enough to calibrate ranges and time it.
x = rng.standard_normal((64, 3, 28, 28)).astype(np.float32)
x = np.repeat(np.repeat(x, 8, axis=2), 8, axis=3)
np.save(f"{sys.argv[1]}/mobilenet_calib.npy", x)
EOF

variants() {  # model dir stem calib -> writes stem.int8.onnx (symmetric, for TensorRT) and stem.fp16.onnx
  local m=$1 calib=$2 stem=${1%.onnx}
  "$tend" quantize "$m" --calibration "$calib" --symmetric --out "$stem.int8.onnx" >"$stem.int8.txt" 2>&1 \
    || die "quantize $m failed, see $stem.int8.txt"
  "$tend" quantize "$m" --fp16 --calibration "$calib" --out "$stem.fp16.onnx" >"$stem.fp16.txt" 2>&1 \
    || die "fp16 $m failed, see $stem.fp16.txt"
}
variants "$out/cnn/cnn.onnx" "$out/cnn/calib.npy"
variants "$out/models/mobilenet_v2.onnx" "$out/models/mobilenet_calib.npy"

# --- 4. Latency per provider and precision -----------------------------------------------------
summary="$out/summary.txt"
{
  echo "tend GPU check: $(date -u +%FT%TZ)"
  echo "$gpus"
  printf '%-26s %-9s %-10s %10s %10s %10s\n' model provider precision p50_ms p99_ms provider_used
} >"$summary"
for m in cnn/cnn mobilenet:models/mobilenet_v2; do
  stem=${m#*:}
  for prov in "${providers[@]}"; do
    for prec in fp32 fp16 int8; do
      f="$out/$stem.onnx"
      [ "$prec" = fp32 ] || f="$out/$stem.$prec.onnx"
      extra=()
      [ "$prov" = tensorrt ] && [ "$prec" = fp16 ] && extra+=(--trt-fp16)
      [ "$prov" = tensorrt ] && [ "$prec" = int8 ] && extra+=(--trt-int8)
      json="$out/bench_$(basename "$stem")_${prov}_${prec}.json"
      if timeout 300 "$tend" bench --model "$f" --provider "$prov" --warmup 20 --iterations 300 \
           --state-dir "$out/state" "${extra[@]}" --json >"$json" 2>"$json.err"; then
        "$py" -c "import json,sys; j=json.load(open(sys.argv[1])); print('%-26s %-9s %-10s %10.3f %10.3f %10s' % (sys.argv[2], sys.argv[3], sys.argv[4], j['p50_ms'], j['p99_ms'], j['provider']))" \
          "$json" "$(basename "$stem")" "$prov" "$prec" >>"$summary"
      else
        printf '%-26s %-9s %-10s %s\n' "$(basename "$stem")" "$prov" "$prec" "FAILED: $(tail -1 "$json.err")" >>"$summary"
      fi
    done
  done
done

# --- 5. Accuracy and latency side by side on the GPU (the CNN has labelled validation data) ---
gpu=${providers[0]}
echo >>"$summary"
echo "tend compare on $gpu (FP32 reference, INT8, FP16):" >>"$summary"
"$tend" compare "$out/cnn/cnn.onnx" "$out/cnn/cnn.int8.onnx" "$out/cnn/cnn.fp16.onnx" \
  --validation "$out/cnn/val.npy" --labels "$out/cnn/val_labels.npy" --provider "$gpu" \
  --iterations 300 >>"$summary" 2>"$out/compare.err" || echo "compare exit $? (see $out/compare.err)" >>"$summary"
cat "$summary"
