"""PyTorch's side of the language-model training step comparison (issue 19, item 8): bench/llama-train.ts.

Builds SmolLM2-135M (transformers' LlamaConfig: vocabulary 49152, hidden 576, 30 layers, 9
heads over 3 key/value heads, FFN 1536, rope_theta 100000, tied embeddings; with --small a
2-layer toy of the same family) with seeded random weights (transformers' own init), saves it
as a HuggingFace directory, and trains it in float32 with TF32 off: LlamaForCausalLM's loss
with labels = input_ids (mean cross-entropy over the shifted tokens), AdamW (lr 3e-4, PyTorch's
other defaults: betas 0.9/0.999, eps 1e-8, weight decay 0.01), one sequence of --seq tokens a
step, on fixed seeded token batches. It writes:

  DIR/config.json, model.safetensors   the initial checkpoint (save_pretrained)
  DIR/reference.safetensors            tokens [steps, seq] i64 (step i trains on row i mod steps),
                                       losses [steps] f32: eager PyTorch's loss at each step
                                       (the loss before that step's update), from the checkpoint
  DIR/torch.json                       versions, device, and with --time the timings (ms per step)

    python3 bench/llama_train_torch.py DIR [--small] [--seq 128] [--steps 8] [--time]
        [--modes eager,eager-fused,compile,compile-reduce-overhead] [--queue 20] [--rounds 5]

Timings, each mode from the saved checkpoint with a fresh optimizer:
  awaited_ms    one step then loss.item() (a device sync, as our session.step reads the loss back), median
  queued_ms     --queue steps issued back to back, then one synchronize: wall / queue, median of --rounds
  gpu_ms        CUDA events around those queued steps: GPU time / queue, median of --rounds
Modes: eager (AdamW as PyTorch picks it: foreach on CUDA), eager-fused (AdamW(fused=True)),
compile (torch.compile(model), default mode, fused AdamW), compile-reduce-overhead (the same
with mode="reduce-overhead": CUDA graphs). torch.compile's first-call time is recorded too. A
mode that fails records its error and the others still run.
"""
import argparse
import json
import os
import statistics
import time

import torch
import transformers
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

# HuggingFaceTB/SmolLM2-135M's config.json (the architecture; the weights are random), as the
# agreement script builds it (llama_torch.py, which lies beside this file in bench/ and .device/)
from llama_torch import SMOLLM2_135M  # noqa: E402
# the same family at toy size, for checking the scripts
SMOL_TOY = dict(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True, hidden_act="silu",
)
LR = 3e-4


def build(config, seed, device):
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**config, architectures=["LlamaForCausalLM"]))
    return model.to(device=device, dtype=torch.float32).train()


def fresh(directory, device):
    return LlamaForCausalLM.from_pretrained(directory).float().to(device).train()


def make_step(model, optimizer, forward):
    def step(tokens):
        optimizer.zero_grad(set_to_none=True)
        loss = forward(input_ids=tokens[None], labels=tokens[None]).loss
        loss.backward()
        optimizer.step()
        return loss

    return step


def run_mode(mode, directory, batches, args, device):
    model = fresh(directory, device)
    if mode == "eager":
        optimizer, forward = torch.optim.AdamW(model.parameters(), lr=LR), model
    elif mode == "eager-fused":
        optimizer, forward = torch.optim.AdamW(model.parameters(), lr=LR, fused=True), model
    elif mode in ("compile", "compile-reduce-overhead"):
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, fused=True)
        forward = torch.compile(model, mode="reduce-overhead" if mode.endswith("reduce-overhead") else None)
    else:
        raise ValueError(f"unknown mode {mode}")
    step = make_step(model, optimizer, forward)
    result = {}
    i = 0

    def next_step():
        nonlocal i
        loss = step(batches[i % len(batches)])
        i += 1
        return loss

    t0 = time.perf_counter()
    first = next_step().item()
    result["first_call_s"] = time.perf_counter() - t0
    result["first_loss"] = first
    for _ in range(args.warmup):
        next_step().item()
    awaited = []
    for _ in range(args.awaited):
        t0 = time.perf_counter()
        next_step().item()
        awaited.append((time.perf_counter() - t0) * 1e3)
    queued, gpu = [], []
    for _ in range(args.rounds):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        for _ in range(args.queue):
            loss = next_step()
        end.record()
        torch.cuda.synchronize()
        queued.append((time.perf_counter() - t0) * 1e3 / args.queue)
        gpu.append(start.elapsed_time(end) / args.queue)
    result.update(
        awaited_ms=statistics.median(awaited),
        queued_ms=statistics.median(queued),
        gpu_ms=statistics.median(gpu),
        last_loss=loss.item(),
        steps=i,
    )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir")
    parser.add_argument("--small", action="store_true", help="a 2-layer toy config instead of SmolLM2-135M")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="reference steps (and distinct token batches)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time", action="store_true")
    parser.add_argument("--modes", default="eager,eager-fused,compile,compile-reduce-overhead")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--awaited", type=int, default=20)
    parser.add_argument("--queue", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = SMOL_TOY if args.small else SMOLLM2_135M
    os.makedirs(args.dir, exist_ok=True)
    model = build(config, args.seed, device)
    model.save_pretrained(args.dir, safe_serialization=True)
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    tokens = torch.randint(0, config["vocab_size"], (args.steps, args.seq), generator=generator)
    batches = [row.to(device) for row in tokens]

    # the reference losses: eager AdamW from the saved checkpoint
    reference = fresh(args.dir, device)
    step = make_step(reference, torch.optim.AdamW(reference.parameters(), lr=LR), reference)
    losses = [step(b).item() for b in batches]
    save_file({"tokens": tokens.to(torch.int64), "losses": torch.tensor(losses, dtype=torch.float32)}, os.path.join(args.dir, "reference.safetensors"))
    del reference, step

    report = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "seq": args.seq,
        "lr": LR,
        "losses": losses,
    }
    if args.time:
        if device != "cuda":
            raise SystemExit("--time needs CUDA")
        report["timings"] = {}
        for mode in args.modes.split(","):
            try:
                report["timings"][mode] = run_mode(mode, args.dir, batches, args, device)
            except Exception as error:  # a mode that fails (say, torch.compile here) leaves the others
                report["timings"][mode] = {"error": f"{type(error).__name__}: {error}"}
            torch.cuda.empty_cache()
            print(mode, json.dumps(report["timings"][mode]), flush=True)
    with open(os.path.join(args.dir, "torch.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.dir}: losses {', '.join(f'{x:.4f}' for x in losses)}")


if __name__ == "__main__":
    main()
