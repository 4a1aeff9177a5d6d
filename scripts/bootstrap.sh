#!/usr/bin/env bash
# Provision everything tend needs on a Debian 12 machine: the Debian packages and a pinned,
# integrity-checked ONNX Runtime SDK laid out under third_party/onnxruntime.
# Safe to re-run: when everything is already there it returns in well under a second.
#
#   scripts/bootstrap.sh            # packages + ONNX Runtime
#   TEND_SKIP_APT=1 scripts/bootstrap.sh   # only ONNX Runtime (no root needed)
#   ONNXRUNTIME_ROOT=/opt/onnxruntime-linux-x64-1.29.0 scripts/bootstrap.sh  # use an official tarball
#   TEND_SKIP_BACKBONE=1 scripts/bootstrap.sh   # no default image backbone (third_party/backbones)
#   TEND_BOOTSTRAP=build scripts/bootstrap.sh   # only the packages that build tend (make demo)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# --- Debian packages ---------------------------------------------------------------------------
# BUILD_PKGS configure and build every target (tests included: a build dir is shared by `make demo`
# and `make test`, and the optional libraries a configure looks for are here so that its cached
# choices do not depend on which command ran first). TEST_PKGS are what the tests run against
# (servers, a browser, Python references, clang for `make fuzz`). TEND_BOOTSTRAP=build installs
# only BUILD_PKGS (`make demo` sets it: the press demo runs nothing else); the default installs all.
BUILD_PKGS=(
  build-essential cmake pkg-config git ca-certificates openssl
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev libexpected-dev
  libeigen3-dev libkissfft-dev libonnx-dev libprotobuf-dev protobuf-compiler
  libsodium-dev libssl-dev libsqlite3-dev libcpp-httplib-dev
  libpaho-mqttpp-dev libpaho-mqtt-dev prometheus-cpp-dev libpqxx-dev libmodbus-dev
  libturbojpeg0-dev libpng-dev libv4l-dev libaravis-dev libusb-1.0-0-dev
)
TEST_PKGS=(
  mosquitto mosquitto-clients prometheus postgresql
  python3-pymodbus python3-serial python3-serial-asyncio
  chromium
  python3-numpy python3-scipy python3-onnx python3-torch python3-torchvision
  aravis-tools python3-pil
  clang libclang-rt-14-dev
)
case "${TEND_BOOTSTRAP:-all}" in
  all) PKGS=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  build) PKGS=("${BUILD_PKGS[@]}") ;;
  *) echo "bootstrap: TEND_BOOTSTRAP is 'all' (default) or 'build', not '$TEND_BOOTSTRAP'" >&2; exit 2 ;;
esac

missing=()
if [ -z "${TEND_SKIP_APT:-}" ]; then
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
# npm ships with some Node.js builds (NodeSource) and conflicts with Debian's npm package there:
# only ask Debian for it when no npm is on the PATH.
if [ -z "${TEND_SKIP_APT:-}" ] && [ -z "${ONNXRUNTIME_ROOT:-}" ] && ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${#missing[@]} Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/tend-apt.log 2>&1 \
    || { echo "bootstrap: apt-get install failed, see /tmp/tend-apt.log" >&2; tail -20 /tmp/tend-apt.log >&2; exit 1; }
  # Debian's mosquitto and prometheus packages start system services; tend's tests start their
  # own instances on free loopback ports and never rely on these.
fi

# --- ONNX Runtime ------------------------------------------------------------------------------
# Official ONNX Runtime 1.29.0 build, as shipped in the npm package below. The integrity string
# is the npm registry's sha512 of the tarball; we refuse anything else.
ORT_VERSION=1.29.0
ORT_NPM_PKG=com.github.asus4.onnxruntime
ORT_NPM_VER=0.4.9
ORT_NPM_SHA512="sha512-BkzxduSZ9IkeDP6Q8lz2TFU2ie7hSSvS7ZIfzMooExoq0CNzJnuuGaUJ7IsojBgqO4ouD1jXah8OYyJbCN29Fg=="
SDK="$here/third_party/onnxruntime"
CACHE="$here/.cache/npm"

# --- Default image backbone ----------------------------------------------------------------------
# MobileNetV2 with ImageNet weights for image anomaly models (docs/vision.md), converted to ONNX
# from the TF.js shards that the MIT-licensed nsfwjs npm package carries. Pinned version, npm's
# sha512 integrity; converted by our own script (python3-onnx, numpy); nothing is committed.
NSFWJS_VER=4.4.0
NSFWJS_SHA512="sha512-krC1fgeTLXtZwgdpKJ0jm7hqv0gTSRQQRL+FhOaxaJ9Wj92t42BO3csO2odwgTAgZgf2RvkwPtp0R8Aa7dc+MA=="
BACKBONES="$here/third_party/backbones"
provision_backbone() {
  local stamp="$NSFWJS_VER $(sha256sum "$here/scripts/backbones/nsfwjs_to_onnx.py" | cut -c1-16)"
  if [ -f "$BACKBONES/.complete" ] && [ "$(cat "$BACKBONES/.complete")" = "$stamp" ]; then return 0; fi
  echo "bootstrap: building the default image backbone from npm nsfwjs@$NSFWJS_VER"
  mkdir -p "$CACHE" "$BACKBONES"
  local tgz="$CACHE/nsfwjs-$NSFWJS_VER.tgz"
  [ -f "$tgz" ] || (cd "$CACHE" && npm pack --silent "nsfwjs@$NSFWJS_VER" >/dev/null)
  local got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [ "$got" != "$NSFWJS_SHA512" ]; then
    echo "bootstrap: integrity check failed for $tgz (expected $NSFWJS_SHA512, got $got)" >&2
    rm -f "$tgz"
    return 1
  fi
  /usr/bin/python3 "$here/scripts/backbones/nsfwjs_to_onnx.py" "$tgz" "$BACKBONES/mobilenet_v2_imagenet.onnx.tmp"
  mv "$BACKBONES/mobilenet_v2_imagenet.onnx.tmp" "$BACKBONES/mobilenet_v2_imagenet.onnx"
  echo "$stamp" >"$BACKBONES/.complete"
}
if [ -n "${TEND_SKIP_BACKBONE:-}" ]; then
  :
elif command -v npm >/dev/null 2>&1; then
  provision_backbone
else
  echo "bootstrap: no npm: the default image backbone is not built (image models need --backbone)" >&2
fi

if [ -n "${ONNXRUNTIME_ROOT:-}" ]; then
  [ -f "$ONNXRUNTIME_ROOT/include/onnxruntime_cxx_api.h" ] || [ -f "$ONNXRUNTIME_ROOT/include/onnxruntime/onnxruntime_cxx_api.h" ] \
    || { echo "bootstrap: ONNXRUNTIME_ROOT=$ONNXRUNTIME_ROOT has no include/onnxruntime_cxx_api.h" >&2; exit 1; }
  echo "bootstrap: using ONNX Runtime from ONNXRUNTIME_ROOT=$ONNXRUNTIME_ROOT"
  exit 0
fi

if [ -f "$SDK/.complete" ] && [ "$(cat "$SDK/.complete")" = "$ORT_VERSION" ]; then
  exit 0
fi

echo "bootstrap: provisioning ONNX Runtime $ORT_VERSION from npm package $ORT_NPM_PKG@$ORT_NPM_VER"
mkdir -p "$CACHE"
tgz="$CACHE/$ORT_NPM_PKG-$ORT_NPM_VER.tgz"
if [ ! -f "$tgz" ]; then
  (cd "$CACHE" && npm pack --silent "$ORT_NPM_PKG@$ORT_NPM_VER" >/dev/null)
fi
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$got" != "$ORT_NPM_SHA512" ]; then
  echo "bootstrap: integrity check failed for $tgz" >&2
  echo "  expected $ORT_NPM_SHA512" >&2
  echo "  got      $got" >&2
  rm -f "$tgz"
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$tgz" -C "$tmp"
p="$tmp/package/Plugins"
hdr="$p/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers"
[ -f "$p/Linux/x64/libonnxruntime.so" ] && [ -d "$hdr" ] \
  || { echo "bootstrap: npm package layout not as expected (no Linux/x64 library or headers)" >&2; exit 1; }

rm -rf "$SDK"
mkdir -p "$SDK/include" "$SDK/lib"
cp "$hdr"/*.h "$SDK/include/"
cp "$p/Linux/x64/libonnxruntime.so" "$SDK/lib/libonnxruntime.so.$ORT_VERSION"
[ -f "$p/Linux/x64/libonnxruntime_providers_shared.so" ] && cp "$p/Linux/x64/libonnxruntime_providers_shared.so" "$SDK/lib/"
ln -sf "libonnxruntime.so.$ORT_VERSION" "$SDK/lib/libonnxruntime.so.1"
ln -sf "libonnxruntime.so.1" "$SDK/lib/libonnxruntime.so"
echo "$ORT_VERSION" >"$SDK/VERSION"
echo "$ORT_VERSION" >"$SDK/.complete"
echo "bootstrap: ONNX Runtime SDK ready in $SDK"
