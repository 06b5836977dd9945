"""Exports seeded PyTorch models to ONNX for bench/onnx-torch.ts (issue 18), with onnxruntime's
outputs as the reference and PyTorch eager (and torch.compile) timings on the GPU as the
figures to beat.

Models (weights=None, seeded; BatchNorm running statistics and affine parameters drawn so the
batch norms are not identities): torchvision ResNet-18, ResNet-50, MobileNetV2 (input
[batch, 3, 224, 224]); GPT-2 with 2 layers (transformers GPT2Config defaults otherwise: 768
wide, 12 heads, vocabulary 50257; eager attention; input_ids [batch, seq] int64, output
logits); and resnet18_train, a training step: ResNet-18 in eval mode (batch norms use their
running statistics, which stay fixed; γ and β train) whose exported module returns the mean
cross-entropy of its logits against integer labels (F.cross_entropy), so the ONNX file
carries the loss (SoftmaxCrossEntropyLoss; labels [batch] int64). PyTorch times zero_grad + forward + backward + SGD step; the
reference for our first step is torch's in float64 on the CPU: the loss and every parameter
after one SGD step.

    python3 bench/onnx_torch_export.py [--out .device/onnx-torch]
        [--models resnet18,resnet50,mobilenet_v2,gpt2,resnet18_train] [--batch 1,4]
        [--train-batch 8] [--lr 0.01] [--seq 64] [--seed 0] [--opset 17]
        [--exporter auto|torchscript|dynamo] [--warmup 20] [--iters 100] [--compile]

--batch gives the inference batches: one export and one row per model and batch. Exporters:
the TorchScript one first at --opset (static shapes, no onnxscript needed); where it fails (as
for transformers 5's GPT-2), the dynamo one at opset max(--opset, 18): asked for opset 17 it
builds at 18 and down-converts, writing Split's num_outputs attribute, which only opset 18
defines (onnxruntime refuses that file). The manifest records which exporter and opset wrote
each file.

Writes into --out: <name>.onnx (name: <model>.b<batch>), <name>.<input>.bin (raw
little-endian: float32, or int64 for token ids), <name>.<output>.ort.bin (onnxruntime's
output, float32), for resnet18_train <name>.torch_updated.bin (every trainable parameter after
one SGD step, float32, concatenated) and manifest.json: { "torch", "onnxruntime", "device",
"models": [{ "name", "model", "batch", "kind" ("inference" | "train"), "onnx", "exporter",
"opset", "inputs": [{name, dtype, shape, file}], "outputs": [{name, shape, file}],
"ort_vs_torch_max_abs", "torch_eager_ms": {median, p10, p90}, "torch_compile_ms" (with
--compile); for "train" also "lr", "torch_loss", "updated": {"file", "tensors": [{name,
shape, offset}]} }] }. A model that fails is listed with "error" and the others go on. TF32
is off (torch.backends) so torch computes float32 as our plans do. onnxruntime runs on the
CPU execution provider (the accuracy reference).
"""
import argparse
import copy
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

INFERENCE_MODELS = ("resnet18", "resnet50", "mobilenet_v2", "gpt2")
TRAIN_MODELS = ("resnet18_train",)


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


def vision(name, seed):
    import torchvision

    torch.manual_seed(seed)
    return seeded_batchnorms(getattr(torchvision.models, name)(weights=None), seed).eval()


class CrossEntropy(nn.Module):
    """The network's mean cross-entropy against integer labels, as one scalar output."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, labels):
        return nn.functional.cross_entropy(self.net(x), labels)


def build(name, batch, args):
    """(module, example inputs {name: tensor}, output names)."""
    if name in ("resnet18", "resnet50", "mobilenet_v2"):
        g = torch.Generator().manual_seed(args.seed + 1)
        return vision(name, args.seed), {"x": torch.randn(batch, 3, 224, 224, generator=g)}, ["logits"]
    if name == "resnet18_train":
        g = torch.Generator().manual_seed(args.seed + 3)
        x = torch.randn(batch, 3, 224, 224, generator=g)
        labels = torch.randint(0, 1000, (batch,), generator=g, dtype=torch.int64)
        return CrossEntropy(vision("resnet18", args.seed)).eval(), {"x": x, "labels": labels}, ["loss"]
    if name == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(args.seed)
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
        ids = torch.randint(0, config.vocab_size, (batch, args.seq), generator=g, dtype=torch.int64)
        return Logits(model).eval(), {"input_ids": ids}, ["logits"]
    raise ValueError(f"unknown model {name} (known: {', '.join(INFERENCE_MODELS + TRAIN_MODELS)})")


def export(model, inputs, outputs, path, args, keep_parameters=False):
    """Writes the ONNX file; returns (exporter, opset). keep_parameters: no batch norm folded into
    convolutions and no constant folding, so every parameter stays an initializer under its
    PyTorch name (the training step compares them)."""
    params = inspect.signature(torch.onnx.export).parameters
    has_dynamo = "dynamo" in params

    def torchscript():
        kwargs = dict(input_names=list(inputs), output_names=outputs, opset_version=args.opset, do_constant_folding=not keep_parameters)
        if keep_parameters:
            # EVAL (the default) folds batch norms into the convolutions; PRESERVE keeps the
            # module's own (eval) mode and the BatchNormalization nodes (check_parameters_kept
            # refuses the file if an exporter without the argument folded them anyway)
            mode = getattr(torch.onnx, "TrainingMode", None)
            if "training" in params and mode is not None:
                kwargs["training"] = mode.PRESERVE
            else:
                log("this torch.onnx.export takes no training mode: batch norms may be folded")
        if has_dynamo:
            kwargs["dynamo"] = False
        torch.onnx.export(model, tuple(inputs.values()), path, **kwargs)
        return "torchscript", args.opset

    def dynamo():
        # the dynamo exporter builds at opset 18; asked for less it down-converts and leaves
        # Split's num_outputs (an opset-18 attribute) in place, which onnxruntime refuses
        opset = max(args.opset, 18)
        kwargs = dict(input_names=list(inputs), output_names=outputs, opset_version=opset, dynamo=True)
        # one file (ResNet-50 and the 2-layer GPT-2 are far below protobuf's 2 GB)
        if "external_data" in params:
            kwargs["external_data"] = False
        torch.onnx.export(model, tuple(inputs.values()), path, **kwargs)
        return "dynamo", opset

    with torch.no_grad():
        if args.exporter == "dynamo":
            return dynamo()
        if args.exporter == "torchscript" or not has_dynamo:
            return torchscript()
        try:
            return torchscript()
        except Exception as e:  # noqa: BLE001 - the TorchScript exporter may be gone or refuse the model
            log(f"TorchScript export failed ({type(e).__name__}: {str(e)[:300]}); trying dynamo=True at opset {max(args.opset, 18)}")
            return dynamo()


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


def save_inputs(entry, inputs, out):
    entry["inputs"] = []
    for key, value in inputs.items():
        file = f"{entry['name']}.{key}.bin"
        array = value.numpy()
        array.tofile(os.path.join(out, file))
        entry["inputs"].append({"name": key, "dtype": "int64" if array.dtype == np.int64 else "float32", "shape": list(array.shape), "file": file})


def run_onnxruntime(entry, path, inputs, outputs, out):
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    results = session.run(outputs, {k: v.numpy() for k, v in inputs.items()})
    entry["outputs"] = []
    for key, value in zip(outputs, results):
        file = f"{entry['name']}.{key}.ort.bin"
        value.astype(np.float32).tofile(os.path.join(out, file))
        entry["outputs"].append({"name": key, "shape": list(value.shape), "file": file})
    return results


def check_parameters_kept(path, model):
    """Every trainable parameter is an initializer under its name and the batch norms are
    still there, or the ONNX file's parameters are not torch's (a folded exporter)."""
    import onnx

    graph = onnx.load(path).graph
    initializers = {t.name for t in graph.initializer}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in initializers]
    if missing:
        raise RuntimeError(f"{len(missing)} parameters are not initializers of {path} under their PyTorch names (e.g. {missing[:5]}); initializers: {sorted(initializers)[:8]}...")
    if not any(n.op_type == "BatchNormalization" for n in graph.node):
        raise RuntimeError(f"{path} has no BatchNormalization node: the exporter folded them, so γ and β are not parameters of the file")


def reference_step(model, inputs, lr, entry, out):
    """One SGD step in float64 on the CPU (the reference for ours): the loss before it and every
    trainable parameter after it, saved as float32 in one file."""
    reference = copy.deepcopy(model).double().eval()
    optimizer = torch.optim.SGD([p for p in reference.parameters() if p.requires_grad], lr=lr)
    optimizer.zero_grad(set_to_none=True)
    loss = reference(*[v.double() if v.is_floating_point() else v for v in inputs.values()])
    loss.backward()
    optimizer.step()
    entry["torch_loss"] = float(loss.item())
    file = f"{entry['name']}.torch_updated.bin"
    tensors, offset = [], 0
    with open(os.path.join(out, file), "wb") as f:
        for name, p in reference.named_parameters():
            if not p.requires_grad:
                continue
            array = p.detach().to(torch.float32).numpy()
            array.tofile(f)
            tensors.append({"name": name, "shape": list(array.shape), "offset": offset})
            offset += array.size
    entry["updated"] = {"file": file, "tensors": tensors}


def time_inference(entry, model, inputs, args):
    gpu_model = model.cuda()
    gpu_inputs = [v.cuda() for v in inputs.values()]
    with torch.no_grad():
        entry["torch_eager_ms"] = timed_ms(lambda: gpu_model(*gpu_inputs), args.warmup, args.iters)
        log(f"{entry['name']}: torch eager {entry['torch_eager_ms']['median']:.3f} ms (median)")
        if args.compile:
            try:
                compiled = torch.compile(gpu_model)
                entry["torch_compile_ms"] = timed_ms(lambda: compiled(*gpu_inputs), max(args.warmup, 5), args.iters)
                log(f"{entry['name']}: torch.compile {entry['torch_compile_ms']['median']:.3f} ms (median)")
            except Exception as e:  # noqa: BLE001 - a compile failure is a row's note, not the run's end
                entry["torch_compile_error"] = f"{type(e).__name__}: {e}"[:500]
                log(f"{entry['name']}: torch.compile failed: {entry['torch_compile_error']}")


def time_training(entry, model, inputs, args):
    """zero_grad + forward + backward + SGD step, the module in eval mode (batch-norm statistics fixed)."""
    gpu_model = copy.deepcopy(model).cuda().eval()
    gpu_inputs = [v.cuda() for v in inputs.values()]
    optimizer = torch.optim.SGD([p for p in gpu_model.parameters() if p.requires_grad], lr=args.lr)

    def stepper(forward):
        def step():
            optimizer.zero_grad(set_to_none=True)
            forward(*gpu_inputs).backward()
            optimizer.step()

        return step

    entry["torch_eager_ms"] = timed_ms(stepper(gpu_model), args.warmup, args.iters)
    log(f"{entry['name']}: torch eager step {entry['torch_eager_ms']['median']:.3f} ms (median)")
    if args.compile:
        try:
            compiled = torch.compile(gpu_model)
            entry["torch_compile_ms"] = timed_ms(stepper(compiled), max(args.warmup, 5), args.iters)
            log(f"{entry['name']}: torch.compile step {entry['torch_compile_ms']['median']:.3f} ms (median)")
        except Exception as e:  # noqa: BLE001 - a compile failure is a row's note, not the run's end
            entry["torch_compile_error"] = f"{type(e).__name__}: {e}"[:500]
            log(f"{entry['name']}: torch.compile failed: {entry['torch_compile_error']}")


def parse_batches(text):
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        batches = []
    if not batches or any(b < 1 for b in batches):
        raise SystemExit(f"--batch takes positive integers separated by commas (e.g. 1,4); got {text!r}")
    return batches


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".device/onnx-torch")
    parser.add_argument("--models", default=",".join(INFERENCE_MODELS + TRAIN_MODELS))
    parser.add_argument("--batch", default="1", help="inference batches, comma-separated (e.g. 1,4)")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate of the training step")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default="auto")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    args = parser.parse_args()
    batches = parse_batches(args.batch)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in INFERENCE_MODELS + TRAIN_MODELS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; known: {', '.join(INFERENCE_MODELS + TRAIN_MODELS)}")

    import onnxruntime as ort

    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cuda = torch.cuda.is_available()
    device_name = torch.cuda.get_device_name(0) if cuda else "cpu (no CUDA: no timings)"
    log(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {device_name}")
    manifest = {"torch": torch.__version__, "onnxruntime": ort.__version__, "device": device_name, "seq": args.seq, "models": []}

    runs = [(m, b) for m in models if m in INFERENCE_MODELS for b in batches] + [(m, args.train_batch) for m in models if m in TRAIN_MODELS]
    for model_name, batch in runs:
        train = model_name in TRAIN_MODELS
        name = f"{model_name}.b{batch}"
        entry = {"name": name, "model": model_name, "batch": batch, "kind": "train" if train else "inference", "onnx": f"{name}.onnx"}
        if train:
            entry["lr"] = args.lr
        manifest["models"].append(entry)
        try:
            started = time.time()
            model, inputs, outputs = build(model_name, batch, args)
            path = os.path.join(args.out, entry["onnx"])
            entry["exporter"], entry["opset"] = export(model, inputs, outputs, path, args, keep_parameters=train)
            log(f"{name}: exported by {entry['exporter']} at opset {entry['opset']} to {path} ({os.path.getsize(path) / 1e6:.1f} MB) in {time.time() - started:.1f} s")
            if train:
                check_parameters_kept(path, model)
            save_inputs(entry, inputs, args.out)
            ort_out = run_onnxruntime(entry, path, inputs, outputs, args.out)
            with torch.no_grad():
                reference = model(*inputs.values()).numpy()
            entry["ort_vs_torch_max_abs"] = float(np.max(np.abs(reference - ort_out[0])))
            log(f"{name}: max |onnxruntime - torch (CPU)| = {entry['ort_vs_torch_max_abs']:.2e}")
            if train:
                reference_step(model, inputs, args.lr, entry, args.out)
                log(f"{name}: torch float64 loss {entry['torch_loss']:.6f}, onnxruntime's {float(ort_out[0]):.6f}")
            if cuda:
                (time_training if train else time_inference)(entry, model, inputs, args)
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
