# The torch side of bench/bandwidth.ts: the same memory-bound ops on the same GPU, timed
# with CUDA events. Argument: a JSON list of {name, op, shape, bytes, rounds}; prints one
# JSON line {version, rows: [{name, us, gbs}]}. GB/s uses the same ideal byte count as ours
# (inputs read once, output written once), so torch's eager multi-kernel chain counts as one.
import json
import sys

import torch
import torch.nn.functional as F


def make(op, shape):
    dev = 'cuda'
    x = lambda s=shape, lo=-2.0, hi=2.0: torch.rand(s, device=dev) * (hi - lo) + lo
    if op == 'add':
        a, b = x(), x()
        return lambda: torch.add(a, b)
    if op == 'addBias':
        a, bias = x(), x([shape[-1]])
        return lambda: a + bias
    if op == 'chain':
        a, b, c = x(), x(), x()
        return lambda: torch.relu(a * b + c) * 0.5
    if op == 'gelu':
        a = x()
        return lambda: F.gelu(a)
    if op == 'sum':
        a = x()
        return lambda: a.sum(-1)
    if op == 'sum0':
        a = x()
        return lambda: a.sum(0)
    if op == 'softmax':
        a = x(lo=-8.0, hi=8.0)
        return lambda: torch.softmax(a, -1)
    if op == 'layerNorm':
        a, g, b = x(), x([shape[-1]]), x([shape[-1]])
        return lambda: F.layer_norm(a, (shape[-1],), g, b, 1e-5)
    if op == 'rmsNorm':
        a, g = x(), x([shape[-1]])
        return lambda: F.rms_norm(a, (shape[-1],), g, 1e-5)
    if op == 'adam':
        p = torch.nn.Parameter(x())
        p.grad = x()
        opt = torch.optim.AdamW([p], lr=1e-3, fused=True)
        return lambda: opt.step()
    raise ValueError(f'unknown op {op}')


def measure(case):
    fn = make(case['op'], case['shape'])
    reps = min(500, max(10, -(-int(8e-3 * 3e12) // case['bytes'])))
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(case['rounds']):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / reps)
    times.sort()
    us = times[len(times) // 2]
    return {'name': case['name'], 'us': us, 'gbs': case['bytes'] / us / 1e3}


def main():
    cases = json.loads(sys.argv[1])
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for case in cases:
        rows.append(measure(case))
        torch.cuda.empty_cache()
    version = f'{torch.__version__} on {torch.cuda.get_device_name()}'
    print(json.dumps({'version': version, 'rows': rows}))


if __name__ == '__main__':
    main()
