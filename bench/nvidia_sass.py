"""The SASS Nvidia's Vulkan driver compiled for our kernels, read from its shader cache.

Dawn hands the driver SPIR-V; the driver compiles it to machine code and caches the result
under $__GL_SHADER_DISK_CACHE_PATH (default ~/.cache/nvidia/GLCache). Each cache entry
(*.bin) holds zstd frames; one of them decompresses to an 'NVDANVVM...' blob whose code
section (size and offset: two little-endian u32 at 0x4c) starts 8 bytes into that section
with raw instructions, which `nvdisasm -b SM90` disassembles. Learned by inspection of driver
580.159.04 on an H200; other drivers may lay the blob out differently.

    # device command (carry [".device"]); copy this file and a zstd binary into .device first
    rm -rf /tmp/cache; mkdir /tmp/cache
    __GL_SHADER_DISK_CACHE_PATH=/tmp/cache node .device/<bench>.mjs ...
    ZSTD=.device/zstd python3 .device/nvidia_sass.py /tmp/cache name

Writes $OUT/<name><n>.sass per compiled kernel and prints its instruction counts (FFMA, LDS,
MOV, and the six most frequent opcodes with their modifiers) and highest register, which is
how the matmul tilings in bench/README were compared.
"""
import collections
import glob
import os
import re
import struct
import subprocess
import sys

ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
NVDISASM = os.environ.get('NVDISASM', '/usr/local/cuda/bin/nvdisasm')


def code_sections(entry: bytes):
    """The raw instructions of every compiled kernel in one cache entry."""
    at = entry.find(ZSTD_MAGIC)
    while at >= 0:
        # the zstd tool stops at the frame's end and reports the trailing bytes as an error
        blob = subprocess.run([os.environ.get('ZSTD', 'zstd'), '-d', '-c'], input=entry[at:], capture_output=True).stdout
        if blob.startswith(b'NVDANVVM'):
            size, offset = struct.unpack_from('<II', blob, 0x4c)
            yield blob[offset + 8: offset + 8 + (size - 8) // 16 * 16]
        at = entry.find(ZSTD_MAGIC, at + 4)


def main(cache: str, name: str):
    out = os.environ.get('OUT', '.')
    n = 0
    for path in sorted(glob.glob(f'{cache}/**/*.bin', recursive=True)):
        for code in code_sections(open(path, 'rb').read()):
            raw = f'/tmp/{name}{n}.bin'
            open(raw, 'wb').write(code)
            sass = subprocess.run([NVDISASM, '-b', 'SM90', raw], capture_output=True, text=True)
            open(f'{out}/{name}{n}.sass', 'w').write(sass.stdout + sass.stderr)
            lines = sass.stdout.splitlines()
            count = lambda op: sum(re.search(rf'\b{op}\b', line) is not None for line in lines)
            registers = max((int(r) for line in lines for r in re.findall(r'\bR(\d+)\b', line)), default=-1) + 1
            # the most frequent opcodes with their modifiers (LDG.E.S8 is a byte, LDG.E.128 four words)
            opcodes = collections.Counter(m.group(1) for line in lines if (m := re.search(r'\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)', line)))
            top = ', '.join(f'{op} {k}' for op, k in opcodes.most_common(6))
            print(f'{name}{n}: {len(lines)} instructions, {registers} registers, FFMA {count("FFMA")}, LDS {count("LDS")}, MOV {count("MOV")}; most: {top}')
            n += 1


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
