"""The PyTorch side of bench/suite.ts: the same workloads, eager, fp32, TF32 off, on the GPU.

    python3 bench/suite_torch.py SPEC.json   # what suite.ts runs: progress on stderr, then one JSON line
    python3 bench/suite_torch.py             # a built-in spec of a few workloads, for trying it alone

SPEC.json: {"passes": 9, "targetMs": 10, "warmupMs": 1000, "workloads": [{"name": .., "kind": "matmul", ..}, ..]}.
Timing, as suite.ts times ours: calibration of the calls per pass (so a pass lasts about
targetMs), warmupMs of warm-up at that count, then `passes` passes of that many back-to-back
calls, each bracketed by CUDA events; the median of µs per call. Calls are queued without
syncing, so small workloads measure torch's launch rate as much as its kernels.
"""
import json
import math
import sys
import traceback

import torch
import torch.nn.functional as F


def setup():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(0)


def time_calls(fn, passes, target_ms, warmup_ms, max_reps=2000):
    """Median µs per call of `fn` over `passes` passes of back-to-back calls; also the reps."""
    fn()
    torch.cuda.synchronize()

    def one_pass(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) * 1000.0  # µs

    reps = 1
    pass_us = one_pass(reps)
    target = target_ms * 1000.0
    while pass_us < target / 4 and reps < max_reps:
        reps = min(max_reps, reps * 8)
        pass_us = one_pass(reps)
    if pass_us > 0:
        reps = max(1, min(max_reps, round(reps * target / pass_us)))
    warmed = 0.0  # warm-up at the chosen reps, as suite.ts warms up ours
    while warmed < warmup_ms * 1000.0:
        us = one_pass(reps)
        warmed += us if us > 0 else warmup_ms * 1000.0
    per = [one_pass(reps) / reps for _ in range(passes)]
    s = sorted(per)
    m = len(s) // 2
    med = s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2
    return med, reps, per


def rand(*shape):
    return torch.rand(*shape, device="cuda") * 2 - 1


# --- workloads: each returns (fn, note) ----------------------------------------------------


def w_matmul(p):
    a, b = rand(p["m"], p["k"]), rand(p["k"], p["n"])
    c = torch.empty(p["m"], p["n"], device="cuda")
    return (lambda: torch.mm(a, b, out=c)), "torch.mm(a, b, out=c)"


def w_int_mm(p):
    a = torch.randint(-128, 128, (p["m"], p["k"]), dtype=torch.int8, device="cuda")
    b = torch.randint(-128, 128, (p["k"], p["n"]), dtype=torch.int8, device="cuda")
    return (lambda: torch._int_mm(a, b)), "torch._int_mm(a, b) (int8 -> int32)"


def w_add(p):
    a, b = rand(*p["shape"]), rand(*p["shape"])
    c = torch.empty_like(a)
    return (lambda: torch.add(a, b, out=c)), "torch.add(a, b, out=c)"


def w_gelu_chain(p):
    x = rand(*p["shape"])
    scale, shift = p["scale"], p["shift"]
    return (lambda: F.gelu(x * scale + shift)), "F.gelu(x * s + b): eager runs 3 kernels (6 passes over 256 MiB); the rate counts the fused 2"


def w_layer_norm(p):
    x = rand(p["rows"], p["cols"])
    gamma, beta = rand(p["cols"]), rand(p["cols"])
    return (lambda: F.layer_norm(x, (p["cols"],), gamma, beta, p["eps"])), "F.layer_norm"


def w_rms_norm(p):
    x = rand(p["rows"], p["cols"])
    gamma = rand(p["cols"])
    if hasattr(F, "rms_norm"):
        return (lambda: F.rms_norm(x, (p["cols"],), gamma, p["eps"])), "F.rms_norm"
    eps = p["eps"]
    return (lambda: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gamma), "composite x*rsqrt(mean(x^2)+eps)*g"


def w_softmax(p):
    x = rand(p["rows"], p["cols"])
    return (lambda: torch.softmax(x, -1)), "torch.softmax"


def w_attention(p):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    h, s, d = p["heads"], p["seq"], p["d"]
    q, k, v = rand(1, h, s, d), rand(1, h, s, d), rand(1, h, s, d)
    causal = bool(p["causal"])
    scale = 1 / math.sqrt(d)
    # fp32 rules out the flash backend; the memory-efficient one takes fp32 and is_causal
    for backend, label in ((SDPBackend.EFFICIENT_ATTENTION, "efficient"), (SDPBackend.MATH, "math")):
        def fn(backend=backend):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)

        try:
            fn()
            torch.cuda.synchronize()
        except RuntimeError:
            continue
        masked = "is_causal=True" if causal else "no mask"
        return fn, f"F.scaled_dot_product_attention, {label} backend, {masked}"
    raise RuntimeError("no SDPA backend accepted the inputs")


def w_mlp_train(p):
    batch = p["batch"]
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=p["lr"])
    loss_fn = torch.nn.CrossEntropyLoss()
    x = rand(batch, 784)
    labels = torch.randint(0, 10, (batch,), device="cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), labels)
        loss.backward()
        opt.step()

    return step, "nn.Sequential(Linear, ReLU, Linear), CrossEntropyLoss, Adam (default foreach), zero_grad+forward+backward+step"


class Block(torch.nn.Module):
    """One SmolLM2-width decoder layer as bench/suite.ts builds it: RMSNorm, GQA with a causal mask, SwiGLU."""

    def __init__(self, hidden, heads, kv_heads, ffn):
        super().__init__()
        self.heads, self.kv_heads, self.d = heads, kv_heads, hidden // heads
        lin = lambda i, o: torch.nn.Linear(i, o, bias=False)
        self.attn_norm = torch.nn.Parameter(torch.ones(hidden))
        self.ffn_norm = torch.nn.Parameter(torch.ones(hidden))
        self.wq, self.wk, self.wv, self.wo = lin(hidden, hidden), lin(hidden, kv_heads * self.d), lin(hidden, kv_heads * self.d), lin(hidden, hidden)
        self.w_gate, self.w_up, self.w_down = lin(hidden, ffn), lin(hidden, ffn), lin(ffn, hidden)
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)

    @staticmethod
    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * g

    def forward(self, x):
        t = x.shape[0]
        h = self.rms(x, self.attn_norm)
        q = self.wq(h).view(t, self.heads, self.d).transpose(0, 1)
        group = self.heads // self.kv_heads
        k = self.wk(h).view(t, self.kv_heads, self.d).transpose(0, 1).repeat_interleave(group, 0)
        v = self.wv(h).view(t, self.kv_heads, self.d).transpose(0, 1).repeat_interleave(group, 0)
        a = F.scaled_dot_product_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), is_causal=True)[0]
        x = x + self.wo(a.transpose(0, 1).reshape(t, -1))
        f = self.rms(x, self.ffn_norm)
        return x + self.w_down(F.silu(self.w_gate(f)) * self.w_up(f))


def w_block(p):
    block = Block(p["hidden"], p["heads"], p["kvHeads"], p["ffn"]).cuda()
    x = rand(p["seq"], p["hidden"])
    what = "eager module: RMSNorm by hand, Linear(bias=False), repeat_interleave GQA, SDPA is_causal (default backend), silu(gate)*up"
    if not p["train"]:
        def forward():
            with torch.no_grad():
                return block(x)

        return forward, what + ", under no_grad"
    target = rand(p["seq"], p["hidden"])
    opt = torch.optim.AdamW(block.parameters(), lr=3e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(block(x), target)
        loss.backward()
        opt.step()

    return step, what + "; mse_loss, backward, AdamW (default foreach)"


KINDS = {
    "matmul": w_matmul,
    "int_mm": w_int_mm,
    "add": w_add,
    "gelu_chain": w_gelu_chain,
    "layer_norm": w_layer_norm,
    "rms_norm": w_rms_norm,
    "softmax": w_softmax,
    "attention": w_attention,
    "mlp_train": w_mlp_train,
    "block": w_block,
}

DEFAULT_SPEC = {
    "passes": 9,
    "targetMs": 10,
    "warmupMs": 1000,
    "workloads": [
        {"name": "matmul 4096x4096x4096", "kind": "matmul", "m": 4096, "k": 4096, "n": 4096},
        {"name": "softmax 4608x512", "kind": "softmax", "rows": 4608, "cols": 512},
        {"name": "attention 9x512x64", "kind": "attention", "heads": 9, "seq": 512, "d": 64, "causal": False},
    ],
}


def main():
    spec = DEFAULT_SPEC
    if len(sys.argv) > 1:
        with open(sys.argv[1]) as f:
            spec = json.load(f)
    setup()
    results = []
    for w in spec["workloads"]:
        row = {"name": w["name"]}
        try:
            fn, note = KINDS[w["kind"]](w)
            us, reps, per = time_calls(fn, spec["passes"], spec["targetMs"], spec.get("warmupMs", 1000))
            row.update(us=us, reps=reps, passUs=per, note=note)
            print(f"torch {w['name']}: {us:.2f} µs ({reps} reps/pass)", file=sys.stderr)
        except Exception as e:  # one failing workload must not stop the rest
            row["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc(file=sys.stderr)
        results.append(row)
        torch.cuda.empty_cache()
    report = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(),
        "tf32": torch.backends.cuda.matmul.allow_tf32,
        "results": results,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
