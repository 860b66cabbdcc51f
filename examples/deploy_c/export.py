"""Save the demo's LeNet-5 for C, build examples/deploy_c/classify.c against it, run it, compare.

    python examples/deploy_c/export.py --out /tmp/deploy      # then see /tmp/deploy/

Writes OUT/model/ (liblenet5.so, lenet5.h, and convgen's generic main.c), OUT/digits.f32 and OUT/labels.u8 (the held-out digits
as raw files), builds OUT/classify with the system C compiler and checks that the C program
predicts exactly what the model predicts from Python. By hand, the build is
    cc -O2 classify.c -IOUT/model -LOUT/model -llenet5 -Wl,-rpath,OUT/model -o classify
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
from pathlib import Path

import numpy as np

import convgen
from convgen import digits, zoo

HERE = Path(__file__).resolve().parent


def save_model(directory: Path, backend: str) -> convgen.CompiledModel:
    state, _, _ = digits.load()
    net = zoo.lenet5()
    net.load_state_dict(state)
    model = convgen.compile(net.to_graph((1, 1, 32, 32), name="lenet5"), backend=backend, threads=1)
    model.save(directory)
    return model


def build(out: Path, model_dir: Path) -> Path:
    program = out / "classify"
    cc = shlex.split(os.environ.get("CC", "cc"))
    subprocess.run([*cc, "-O2", "-Wall", "-Wextra", str(HERE / "classify.c"), f"-I{model_dir}", f"-L{model_dir}",
                    "-llenet5", f"-Wl,-rpath,{model_dir}", "-o", str(program)], check=True)
    return program


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("deploy"), help="directory for the model and the program")
    parser.add_argument("--backend", choices=["c", "llvm"], default="c")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    model = save_model(out / "model", args.backend)
    _, images, labels = digits.load()
    images.astype(np.float32).tofile(out / "digits.f32")
    labels.astype(np.uint8).tofile(out / "labels.u8")
    python_predictions = np.array([int(model(image[None]).argmax()) for image in images])
    print(f"saved {sorted(p.name for p in (out / 'model').iterdir())} and {len(images)} digits to {out}")

    program = build(out, out / "model")
    result = subprocess.run([str(program), str(out / "digits.f32"), str(out / "labels.u8")],
                            capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    c_predictions = np.array([int(line) for line in lines[:-1]])
    print(f"C program: {lines[-1]}")
    assert np.array_equal(c_predictions, python_predictions), "C and Python disagree"
    print(f"C and Python agree on all {len(images)} digits")


if __name__ == "__main__":
    main()
