"""ResNet-18's distinct layers alone, convgen (both backends) against onnxruntime, 1 thread, batch 1.

    PYTHONPATH=. python benchmarks/resnet18_layers.py                 # every layer
    PYTHONPATH=. python benchmarks/resnet18_layers.py --layers l1_res,ds2 --repeat 31

Each layer as ResNet-18 runs it after batch-norm folding: conv + bias + ReLU, or conv + bias + skip + ReLU
(the residual add fused into the block's last conv; in convgen's graph the 1x1 stride-2 downsample is that
conv).  Per layer the frameworks' timed loops alternate in one process, timed with thread_time (CPU time of
the calling thread: on a shared host, time the thread was preempted does not count; both run on the
calling thread at 1 thread); the median of the loops is reported, and the outputs are compared.
onnxruntime runs its own graph for the layer (Conv, Add, Relu), which it fuses as in the network."""
from __future__ import annotations

import argparse
import time

import numpy as np

# name: (in channels, out channels, input size, kernel, stride, residual)
LAYERS = {
    "stem": (3, 64, 224, 7, 2, False),
    "l1": (64, 64, 56, 3, 1, False), "l1_res": (64, 64, 56, 3, 1, True),
    "l2_s2": (64, 128, 56, 3, 2, False), "l2": (128, 128, 28, 3, 1, False), "l2_res": (128, 128, 28, 3, 1, True),
    "ds2": (64, 128, 56, 1, 2, True),
    "l3_s2": (128, 256, 28, 3, 2, False), "l3": (256, 256, 14, 3, 1, False), "l3_res": (256, 256, 14, 3, 1, True),
    "ds3": (128, 256, 28, 1, 2, True),
    "l4_s2": (256, 512, 14, 3, 2, False), "l4": (512, 512, 7, 3, 1, False), "l4_res": (512, 512, 7, 3, 1, True),
    "ds4": (256, 512, 14, 1, 2, True),
}


def out_size(layer) -> int:
    """The output's height and width: padding k // 2 on each side, as ResNet pads."""
    _, _, size, k, stride, _ = layer
    return (size + 2 * (k // 2) - k) // stride + 1


def arrays(layer, seed=0):
    cin, cout, size, k, stride, residual = layer
    rng = np.random.default_rng(seed)
    out = out_size(layer)
    x = rng.standard_normal((1, cin, size, size)).astype(np.float32)
    w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) * 0.1
    s = rng.standard_normal((1, cout, out, out)).astype(np.float32) if residual else None
    return x, w, b, s


def convgen_model(layer, w, b, backend):
    import convgen
    from convgen import nn
    cin, cout, size, k, stride, residual = layer
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)
    conv.load_state_dict({"weight": w, "bias": b})
    if residual:
        out = conv.to_graph((1, cin, size, size)).output_types[0].shape
        graph = convgen.trace(lambda x, s: nn.relu(conv(x) + s), (1, cin, size, size), out,
                              input_names=["x", "s"], name="layer")
    else:
        graph = nn.Sequential(conv, nn.ReLU()).to_graph((1, cin, size, size), name="layer")
    return convgen.compile(graph, backend=backend, threads=1)


def onnxruntime_session(layer, w, b):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    cin, cout, size, k, stride, residual = layer
    out = out_size(layer)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k], strides=[stride, stride],
                              pads=[k // 2] * 4)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])]
    if residual:
        nodes.append(helper.make_node("Add", ["c", "s"], ["a"]))
        inputs.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, cout, out, out]))
    nodes.append(helper.make_node("Relu", ["a" if residual else "c"], ["y"]))
    graph = helper.make_graph(nodes, "layer", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, out, out])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                                options, providers=["CPUExecutionProvider"])


def cpu_seconds(fn, calls: int) -> float:
    start = time.thread_time()
    for _ in range(calls):
        fn()
    return (time.thread_time() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--repeat", type=int, default=15, help="timed loops per framework (median reported)")
    parser.add_argument("--frameworks", default="c,llvm,ort")
    args = parser.parse_args()
    frameworks = args.frameworks.split(",")
    print(f"{'layer':8} " + " ".join(f"{f:>10}" for f in frameworks) + "   (us, thread_time medians)")
    for name in args.layers.split(","):
        layer = LAYERS[name]
        x, w, b, s = arrays(layer)
        feeds = [x] if s is None else [x, s]
        runs, outs = {}, {}
        for f in frameworks:
            if f == "ort":
                session = onnxruntime_session(layer, w, b)
                named = dict(zip(["x", "s"], feeds))
                runs[f] = lambda session=session, named=named: session.run(None, named)
                outs[f] = runs[f]()[0]
            else:
                model = convgen_model(layer, w, b, f)
                out = np.empty(model.output_shapes[0], np.float32)
                runs[f] = lambda model=model, out=out: model(*feeds, out=out)
                runs[f]()
                outs[f] = out.copy()
        ref = outs[frameworks[-1]]
        for f in frameworks:
            err = np.abs(outs[f] - ref).max() / np.abs(ref).max()
            assert err < 1e-3, (name, f, err)
        calls = {f: max(1, int(0.02 / max(cpu_seconds(runs[f], 3), 1e-7))) for f in frameworks}
        times = {f: [] for f in frameworks}
        for _ in range(args.repeat):
            for f in frameworks:
                times[f].append(cpu_seconds(runs[f], calls[f]))
        print(f"{name:8} " + " ".join(f"{1e6 * np.median(times[f]):10.1f}" for f in frameworks), flush=True)


if __name__ == "__main__":
    main()
