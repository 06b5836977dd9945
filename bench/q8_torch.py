"""PyTorch's nearest thing to our Q8_0 products (issue 20 item 5), timed on the GPU machine.

PyTorch has no GGUF kernels. The closest it has to a Q8_0 weight times int8-rounded
activations is torch._int_mm (int8 x int8 -> int32 on tensor cores) followed by its scaling:
here per row of x and per column of w (one scale each), which is cheaper than Q8_0's scale per
32 values along K, so it is the faster baseline. Shapes are bench/quantized-prefill.ts's
(M, K, N): 128 tokens through SmolLM2-135M's MLP up projection, 512 through a 7B Llama's
square layer. Also torch's fp32 product (TF32 off) at the same shapes, and for the decode
shapes of bench/quantized-matvec.ts (one row: _int_mm needs M > 16) torch's fp32 and bf16
matrix-vector products as the bytes-per-token reference.

    python3 bench/q8_torch.py [--rounds 50]    # on the GPU machine; prints a table, JSON with $OUT
"""
import json
import os
import sys

import torch

PREFILL = [(128, 576, 1536), (512, 4096, 4096)]
DECODE = [(1, 4096, 4096), (1, 4096, 11008), (1, 11008, 4096)]


def gpu_ms(fn, rounds):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(rounds):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def main():
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 50
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(1)
    rows = []
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| product | M×K×N | torch ms | TFLOP/s | weight GB/s |")
    print("| --- | --- | ---: | ---: | ---: |")
    for m, k, n in PREFILL:
        x = torch.randn(m, k, device=dev, generator=g)
        w = torch.randn(k, n, device=dev, generator=g)
        xs = x.abs().amax(dim=1, keepdim=True) / 127
        ws = w.abs().amax(dim=0, keepdim=True) / 127
        xq = torch.round(x / xs).to(torch.int8)
        wq = torch.round(w / ws).to(torch.int8).t().contiguous().t()  # column-major B, as _int_mm wants

        def int8():
            return torch._int_mm(xq, wq).to(torch.float32) * xs * ws

        def f32():
            return x @ w

        err = (int8() - f32()).abs().max().item()
        for name, fn, weight_bytes in (("_int_mm + row/column scales", int8, k * n), ("fp32 matmul (TF32 off)", f32, 4 * k * n)):
            ms = gpu_ms(fn, rounds)
            row = {"product": name, "m": m, "k": k, "n": n, "ms": ms, "tflops": 2 * m * k * n / ms / 1e9, "weight_gbs": weight_bytes / ms / 1e6}
            if name.startswith("_int_mm"):
                row["max_abs_error_vs_fp32"] = err
            rows.append(row)
            print(f"| {name} | {m}×{k}×{n} | {ms:.4f} | {row['tflops']:.1f} | {row['weight_gbs']:.0f} |")
    for m, k, n in DECODE:
        x = torch.randn(m, k, device=dev, generator=g)
        for dtype, size in ((torch.float32, 4), (torch.bfloat16, 2)):
            w = torch.randn(n, k, device=dev, generator=g).to(dtype)
            xd = x.to(dtype)

            def mv():
                return torch.nn.functional.linear(xd, w)

            ms = gpu_ms(mv, rounds)
            row = {"product": f"{str(dtype).split('.')[1]} matrix-vector", "m": m, "k": k, "n": n, "ms": ms, "weight_gbs": size * k * n / ms / 1e6}
            rows.append(row)
            print(f"| {row['product']} | {m}×{k}×{n} | {ms:.4f} | – | {row['weight_gbs']:.0f} |")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "q8_torch.json"), "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
