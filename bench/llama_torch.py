"""transformers' side of the language-model agreement and speed comparison (issue 19, items 6 and 8).

Builds each config with seeded random weights (no downloads), saves it as a HuggingFace
directory (config.json + model.safetensors), runs a prefill of the prompt and greedy decode
steps through the KV cache in float32 (TF32 off), and writes what it saw beside the weights:

  DIR/NAME/config.json, model.safetensors   the checkpoint (transformers' own save_pretrained)
  DIR/NAME/reference.safetensors            prompt [P] i64, tokens [steps + 1] i64 (greedy: the
                                            prefill's argmax, then each decode step's),
                                            prefill_logits [P, vocab], decode_logits [steps, vocab]
                                            (decode step i is fed tokens[i] at position P + i)
  DIR/NAME/torch.json                       versions, device, and with --time: timings in ms

    python3 bench/llama_torch.py DIR [--time] [--smollm2-only]   # SmolLM2-135M and a 2-layer Qwen2 (the GPU machine)
    python3 bench/llama_torch.py --fixtures DIR      # toy sizes on the CPU: fixtures/llama-torch/

bench/llama-agreement.ts reads the directories and compares our plans with them.
"""
import json
import os
import statistics
import sys
import time

import torch
import transformers
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

# HuggingFaceTB/SmolLM2-135M's config.json (the architecture; the weights are random)
SMOLLM2_135M = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
    rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True, hidden_act="silu",
)
# Qwen2-0.5B's widths with 2 layers, untied head (q/k/v biases are Qwen2's own)
QWEN2_2_LAYERS = dict(
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=2,
    num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
    rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False, hidden_act="silu",
)
# toy sizes for the committed fixtures
SMOL_TOY = dict(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True, hidden_act="silu",
)
QWEN_TOY = dict(
    vocab_size=256, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
    rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False, hidden_act="silu",
)

# random weights at 0.02 (transformers' default) give nearly uniform logits whose argmax flips
# on rounding; a wider spread gives peaked distributions like a trained model's
INIT_RANGE = 0.1


def build(kind, config, seed, device):
    torch.manual_seed(seed)
    if kind == "llama":
        cfg = LlamaConfig(**config, initializer_range=INIT_RANGE, architectures=["LlamaForCausalLM"])
        model = LlamaForCausalLM(cfg)
    else:
        cfg = Qwen2Config(**config, initializer_range=INIT_RANGE, architectures=["Qwen2ForCausalLM"])
        model = Qwen2ForCausalLM(cfg)
    # norms start at 1; give them a spread too, so a mistake in how they apply shows
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith(".bias"):
                p.normal_(0, INIT_RANGE)
    return model.to(device=device, dtype=torch.float32).eval()


@torch.no_grad()
def greedy(model, prompt, steps):
    out = model(input_ids=prompt[None], use_cache=True)
    prefill_logits = out.logits[0].float()
    past = out.past_key_values
    tokens = [int(prefill_logits[-1].argmax())]
    decode_logits = []
    for _ in range(steps):
        o = model(input_ids=torch.tensor([[tokens[-1]]], device=prompt.device), past_key_values=past, use_cache=True)
        past = o.past_key_values
        row = o.logits[0, -1].float()
        decode_logits.append(row)
        tokens.append(int(row.argmax()))
    return prefill_logits, torch.stack(decode_logits), tokens


def timed(fn, reps, warm=3):
    """Awaited ms (synchronized wall clock) and GPU ms (CUDA events) per call, medians."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    wall, gpu = [], []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        wall.append((time.perf_counter() - t0) * 1e3)
        gpu.append(start.elapsed_time(end))
    return {"awaited_ms": statistics.median(wall), "gpu_ms": statistics.median(gpu)}


@torch.no_grad()
def timings(model, prompt, generate_tokens=256):
    """Prefill of the prompt, one decode step at len(prompt) of context, a greedy generation: eager and torch.compile."""
    result = {}
    P = prompt.numel()
    ids = prompt[None]
    result["eager_prefill"] = timed(lambda: model(input_ids=ids, use_cache=True), 20)
    out = model(input_ids=ids, use_cache=True)
    past = out.past_key_values
    tok = torch.tensor([[1]], device=prompt.device)

    def decode_once():
        model(input_ids=tok, past_key_values=past, use_cache=True)
        past.crop(P)  # back to P tokens of context for the next call

    try:
        result["eager_decode"] = timed(decode_once, 50)
    except Exception as e:  # noqa: BLE001 - report, carry on
        result["eager_decode_error"] = repr(e)

    def generate_eager():
        o = model(input_ids=ids, use_cache=True)
        cache, t = o.past_key_values, o.logits[:, -1:].argmax(-1)
        for _ in range(generate_tokens):
            o = model(input_ids=t, past_key_values=cache, use_cache=True)
            t = o.logits[:, -1:].argmax(-1)
        return t

    g = timed(generate_eager, 1, warm=1)
    result["eager_generate"] = {**g, "tokens": generate_tokens, "tokens_per_s": generate_tokens / (g["awaited_ms"] / 1e3)}

    try:
        compiled = torch.compile(model, mode="reduce-overhead")
        t0 = time.perf_counter()
        compiled(input_ids=ids, use_cache=False)
        torch.cuda.synchronize()
        result["compile_prefill_first_call_s"] = time.perf_counter() - t0
        result["compiled_prefill"] = timed(lambda: compiled(input_ids=ids, use_cache=False), 20)
    except Exception as e:  # noqa: BLE001
        result["compiled_prefill_error"] = repr(e)[:2000]

    try:
        # a compiled decode step over a static cache (CUDA graphs need fixed shapes and
        # addresses); a step marker before each call, logits copied out of the graph's buffers
        from transformers import StaticCache

        length = P + generate_tokens
        try:
            cache = StaticCache(config=model.config, max_cache_len=length)
        except TypeError:
            cache = StaticCache(config=model.config, max_batch_size=1, max_cache_len=length, device=prompt.device, dtype=torch.float32)
        model(input_ids=ids, past_key_values=cache, cache_position=torch.arange(P, device=prompt.device), use_cache=True)
        step = torch.compile(
            lambda t, pos: model(input_ids=t, past_key_values=cache, cache_position=pos, use_cache=True).logits,
            mode="reduce-overhead",
            fullgraph=True,
        )
        at = torch.tensor([P], device=prompt.device)

        def decode_compiled():
            torch.compiler.cudagraph_mark_step_begin()
            return step(tok, at).clone()

        t0 = time.perf_counter()
        decode_compiled()
        torch.cuda.synchronize()
        result["compile_decode_first_call_s"] = time.perf_counter() - t0
        result["compiled_decode"] = timed(decode_compiled, 50, warm=5)
    except Exception as e:  # noqa: BLE001
        result["compiled_decode_error"] = repr(e)[:2000]
    return result


def write(directory, kind, config, seed, prompt_length, steps, device, with_timing):
    os.makedirs(directory, exist_ok=True)
    model = build(kind, config, seed, device)
    model.save_pretrained(directory, safe_serialization=True)
    g = torch.Generator().manual_seed(seed + 1)
    prompt = torch.randint(0, config["vocab_size"], (prompt_length,), generator=g).to(device)
    prefill_logits, decode_logits, tokens = greedy(model, prompt, steps)
    save_file(
        {
            "prompt": prompt.cpu(),
            "tokens": torch.tensor(tokens, dtype=torch.int64),
            "prefill_logits": prefill_logits.cpu().contiguous(),
            "decode_logits": decode_logits.cpu().contiguous(),
        },
        os.path.join(directory, "reference.safetensors"),
    )
    top2 = torch.topk(decode_logits, 2, dim=-1).values
    meta = {
        "kind": kind,
        "seed": seed,
        "init_range": INIT_RANGE,
        "prompt_length": prompt_length,
        "steps": steps,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "logits_abs_max": float(decode_logits.abs().max()),
        "smallest_top2_margin": float((top2[:, 0] - top2[:, 1]).min()),
    }
    if with_timing:
        meta["timings"] = timings(model, prompt)
    with open(os.path.join(directory, "torch.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(directory, json.dumps(meta, indent=1), flush=True)


def main():
    args = sys.argv[1:]
    if args and args[0] == "--fixtures":
        root = args[1]
        write(os.path.join(root, "smollm2-toy"), "llama", SMOL_TOY, 11, 12, 8, "cpu", False)
        write(os.path.join(root, "qwen2-toy"), "qwen2", QWEN_TOY, 12, 12, 8, "cpu", False)
        return
    root = args[0]
    with_timing = "--time" in args
    write(os.path.join(root, "smollm2-135m"), "llama", SMOLLM2_135M, 1, 128, 64, "cuda", with_timing)
    if "--smollm2-only" not in args:
        write(os.path.join(root, "qwen2-2layers"), "qwen2", QWEN2_2_LAYERS, 2, 128, 64, "cuda", False)


if __name__ == "__main__":
    main()
