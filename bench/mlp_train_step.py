"""The MNIST MLP's training step in PyTorch eager: the reference for bench/mlp-train-step.ts.

784-128-10 (Linear, ReLU, Linear), batch 32, float32, CrossEntropyLoss (mean), Adam lr 1e-3,
TF32 off, on CUDA, with fixed random batches kept on the GPU. Two rows: Adam as PyTorch
picks it by default (foreach on CUDA) and Adam(fused=True).

    python3 bench/mlp_train_step.py [--json] [--warmup 50] [--steps 500] [--queue 200] [--seed 1]

Latency: each step followed by loss.item() (a device sync, as our step() reads the loss back);
median and p90. Throughput: `queue` steps without a sync, then torch.cuda.synchronize(); wall
time / queue, median over `rounds` rounds. Figures in microseconds.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn

BATCH = 32


def quantile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def default_adam_kind(params):
    """What torch.optim.Adam() uses when neither foreach nor fused is given."""
    try:
        from torch.optim.optimizer import _default_to_fused_or_foreach

        fused, foreach = _default_to_fused_or_foreach(list(params), differentiable=False, use_fused=False)
        return "fused" if fused else "foreach" if foreach else "for-loop"
    except Exception:  # private helper; its signature has changed between releases
        return "unknown"


def measure(name, adam_kwargs, args, batches):
    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)).cuda()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **adam_kwargs)
    i = 0

    def step():
        nonlocal i
        x, labels = batches[i % len(batches)]
        i += 1
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), labels)
        loss.backward()
        opt.step()
        return loss

    first_loss = step().item()
    for _ in range(args.warmup - 1):
        step().item()

    latencies = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step().item()
        latencies.append((time.perf_counter() - start) * 1e6)
    latencies.sort()

    rounds = []
    loss = None
    for _ in range(args.rounds):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.queue):
            loss = step()
        torch.cuda.synchronize()
        rounds.append((time.perf_counter() - start) * 1e6 / args.queue)

    return {
        "name": name,
        "latencyMedianUs": quantile(latencies, 0.5),
        "latencyP90Us": quantile(latencies, 0.9),
        "throughputUs": statistics.median(rounds),
        "firstLoss": first_loss,
        "lastLoss": loss.item(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--queue", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batches", type=int, default=16)
    args = parser.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    generator = torch.Generator(device="cuda").manual_seed(args.seed)
    batches = [
        (
            torch.rand(BATCH, 784, device="cuda", generator=generator),
            torch.randint(0, 10, (BATCH,), device="cuda", generator=generator),
        )
        for _ in range(args.batches)
    ]

    probe = [torch.zeros(1, device="cuda", requires_grad=True)]
    default = default_adam_kind(probe)
    rows = [
        measure(f"Adam default ({default})", {}, args, batches),
        measure("Adam fused=True", {"fused": True}, args, batches),
    ]
    report = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(),
        "defaultAdam": default,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"torch {report['torch']} on {report['device']}, TF32 off, batch {BATCH}; default Adam: {default}")
    print(f"{'implementation':<28} {'lat med us':>10} {'lat p90 us':>10} {'thru us/step':>12}   loss first->last")
    for r in rows:
        print(
            f"{r['name']:<28} {r['latencyMedianUs']:>10.1f} {r['latencyP90Us']:>10.1f} {r['throughputUs']:>12.1f}"
            f"   {r['firstLoss']:.4f} -> {r['lastLoss']:.4f}"
        )


if __name__ == "__main__":
    main()
