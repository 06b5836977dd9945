"""Exports seeded PyTorch models to ONNX for bench/onnx-torch.ts (issue 18), with onnxruntime's
outputs as the reference and PyTorch eager timings on the GPU as the figure to beat.

Models (weights=None, seeded; BatchNorm running statistics and affine parameters drawn so the
batch norms are not identities): torchvision ResNet-18, ResNet-50, MobileNetV2 (input
[batch, 3, 224, 224]); GPT-2 with 2 layers (transformers GPT2Config defaults otherwise: 768
wide, 12 heads, vocabulary 50257; eager attention; input_ids [1, seq] int64, output logits).

    python3 bench/onnx_torch_export.py [--out .device/onnx-torch] [--models resnet18,resnet50,mobilenet_v2,gpt2]
        [--batch 1] [--seq 64] [--seed 0] [--opset 17] [--warmup 20] [--iters 100] [--compile]

Writes into --out: <model>.onnx, <model>.<input>.bin (raw little-endian: float32, or int64 for
token ids), <model>.<output>.ort.bin (onnxruntime's output, float32) and manifest.json:
{ "torch": version, "device": name, "models": [{ "name", "onnx", "inputs": [{name, dtype,
shape, file}], "outputs": [{name, shape, file}], "ort_vs_torch_max_abs", "torch_eager_ms":
{median, p10, p90}, "torch_compile_ms" (with --compile) }] }. A model that fails is listed
with "error" and the others go on. TF32 is off (torch.backends) so torch computes float32 as
our plans do. onnxruntime runs on the CPU execution provider (the accuracy reference).
"""
import argparse
import inspect
import json
import os
import statistics
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn as nn


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def seeded_batchnorms(model, seed):
    """Running statistics and affine parameters drawn from `seed` (weights=None leaves 0/1)."""
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_((torch.rand(c, generator=g) - 0.5) * 0.2)
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_((torch.rand(c, generator=g) - 0.5) * 0.2)
    return model


def build(name, args):
    """(module returning one tensor, example inputs {name: tensor}, output names)."""
    torch.manual_seed(args.seed)
    if name in ("resnet18", "resnet50", "mobilenet_v2"):
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
        seeded_batchnorms(model, args.seed)
        g = torch.Generator().manual_seed(args.seed + 1)
        x = torch.randn(args.batch, 3, 224, 224, generator=g)
        return model.eval(), {"x": x}, ["logits"]
    if name == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(n_layer=2, use_cache=False)
        try:
            model = GPT2LMHeadModel(config, attn_implementation="eager")
        except TypeError:
            config._attn_implementation = "eager"
            model = GPT2LMHeadModel(config)

        class Logits(nn.Module):
            def __init__(self, lm):
                super().__init__()
                self.lm = lm

            def forward(self, input_ids):
                return self.lm(input_ids=input_ids, use_cache=False).logits

        g = torch.Generator().manual_seed(args.seed + 2)
        ids = torch.randint(0, config.vocab_size, (1, args.seq), generator=g, dtype=torch.int64)
        return Logits(model).eval(), {"input_ids": ids}, ["logits"]
    raise ValueError(f"unknown model {name}")


def export(model, inputs, outputs, path, opset):
    kwargs = dict(input_names=list(inputs), output_names=outputs, opset_version=opset, do_constant_folding=True)
    has_dynamo = "dynamo" in inspect.signature(torch.onnx.export).parameters
    # the TorchScript exporter first (static shapes, no onnxscript needed); newer torch defaults to dynamo
    if has_dynamo:
        kwargs["dynamo"] = False
    with torch.no_grad():
        try:
            torch.onnx.export(model, tuple(inputs.values()), path, **kwargs)
        except Exception as e:  # noqa: BLE001 - the TorchScript exporter may be gone or refuse the model
            if not has_dynamo:
                raise
            log(f"TorchScript export failed ({type(e).__name__}: {str(e)[:300]}); trying dynamo=True")
            kwargs.pop("do_constant_folding")
            kwargs["dynamo"] = True
            # one file (ResNet-50 and the 2-layer GPT-2 are far below protobuf's 2 GB)
            if "external_data" in inspect.signature(torch.onnx.export).parameters:
                kwargs["external_data"] = False
            torch.onnx.export(model, tuple(inputs.values()), path, **kwargs)


def timed_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return {"median": statistics.median(times), "p10": times[len(times) // 10], "p90": times[(9 * len(times)) // 10]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".device/onnx-torch")
    parser.add_argument("--models", default="resnet18,resnet50,mobilenet_v2,gpt2")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    args = parser.parse_args()

    import onnxruntime as ort

    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cuda = torch.cuda.is_available()
    device_name = torch.cuda.get_device_name(0) if cuda else "cpu (no CUDA: no timings)"
    log(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {device_name}")
    manifest = {"torch": torch.__version__, "onnxruntime": ort.__version__, "device": device_name, "batch": args.batch, "seq": args.seq, "models": []}

    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        entry = {"name": name, "onnx": f"{name}.onnx"}
        manifest["models"].append(entry)
        try:
            started = time.time()
            model, inputs, outputs = build(name, args)
            path = os.path.join(args.out, entry["onnx"])
            export(model, inputs, outputs, path, args.opset)
            log(f"{name}: exported to {path} ({os.path.getsize(path) / 1e6:.1f} MB) in {time.time() - started:.1f} s")
            entry["inputs"] = []
            for key, value in inputs.items():
                file = f"{name}.{key}.bin"
                array = value.numpy()
                array.tofile(os.path.join(args.out, file))
                entry["inputs"].append({"name": key, "dtype": "int64" if array.dtype == np.int64 else "float32", "shape": list(array.shape), "file": file})
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            ort_out = session.run(outputs, {k: v.numpy() for k, v in inputs.items()})
            entry["outputs"] = []
            for key, value in zip(outputs, ort_out):
                file = f"{name}.{key}.ort.bin"
                value.astype(np.float32).tofile(os.path.join(args.out, file))
                entry["outputs"].append({"name": key, "shape": list(value.shape), "file": file})
            with torch.no_grad():
                reference = model(*inputs.values()).numpy()
            entry["ort_vs_torch_max_abs"] = float(np.max(np.abs(reference - ort_out[0])))
            log(f"{name}: max |onnxruntime - torch (CPU)| = {entry['ort_vs_torch_max_abs']:.2e}")
            if cuda:
                gpu_model = model.cuda()
                gpu_inputs = [v.cuda() for v in inputs.values()]
                with torch.no_grad():
                    entry["torch_eager_ms"] = timed_ms(lambda: gpu_model(*gpu_inputs), args.warmup, args.iters)
                    log(f"{name}: torch eager {entry['torch_eager_ms']['median']:.3f} ms (median)")
                    if args.compile:
                        try:
                            compiled = torch.compile(gpu_model)
                            entry["torch_compile_ms"] = timed_ms(lambda: compiled(*gpu_inputs), max(args.warmup, 5), args.iters)
                            log(f"{name}: torch.compile {entry['torch_compile_ms']['median']:.3f} ms (median)")
                        except Exception as e:  # noqa: BLE001 - a compile failure is a row's note, not the run's end
                            entry["torch_compile_error"] = f"{type(e).__name__}: {e}"[:500]
                            log(f"{name}: torch.compile failed: {entry['torch_compile_error']}")
                del gpu_model
                torch.cuda.empty_cache()
        except Exception as e:  # noqa: BLE001 - one model's failure is reported, the others go on
            entry["error"] = f"{type(e).__name__}: {e}"[:2000]
            log(f"{name}: FAILED: {entry['error']}")
            traceback.print_exc()
        with open(os.path.join(args.out, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
    log(f"wrote {os.path.join(args.out, 'manifest.json')}")


if __name__ == "__main__":
    main()
