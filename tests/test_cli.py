"""The `convgen` command: every verb, its --help, MODEL files, errors, the demo."""
from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

import convgen
from convgen import cli, digits, nn, zoo

from conftest import assert_close

ROOT = Path(__file__).resolve().parent.parent
VERBS = ["demo", "summary", "compile", "run", "show-code", "bench"]

MODEL_FILE = """
import convgen
from convgen import nn

nn.manual_seed(5)
net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
graph = net.to_graph((1, 2, 8, 8), name="tiny")

if __name__ == "__main__":
    raise SystemExit("a MODEL file's main block must not run")
"""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.py"
    path.write_text(MODEL_FILE)
    return path


def tiny_graph():
    nn.manual_seed(5)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).to_graph((1, 2, 8, 8))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_verbs_are_all_there():
    assert list(cli.VERBS)[:len(VERBS)] == VERBS


@pytest.mark.parametrize("verb", [None, *VERBS])
def test_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([verb, "--help"] if verb else ["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "usage: convgen" in text
    if verb is None:
        assert all(v in text for v in VERBS) and "MODEL is an .onnx file" in text


def test_readme_first_command_is_the_demo_and_ci_runs_it():
    assert "pip install . && convgen demo" in (ROOT / "README.md").read_text()
    assert "\nconvgen demo" in (ROOT / ".ci" / "run").read_text()


def test_entry_point_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["convgen"].partition(":")
    assert module == "convgen.cli" and function == "main"


def test_python_dash_m(tmp_path):
    result = subprocess.run([sys.executable, "-m", "convgen", "--version"], capture_output=True, text=True,
                            cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"convgen {convgen.__version__}"


def test_summary_of_a_python_file(model_file, capsys):
    code, out, _ = run_cli(capsys, "summary", model_file)
    assert code == 0
    assert 'Graph "tiny"' in out and "[1, 4, 8, 8]" in out and "[1, 4, 4, 4]" in out and "memory" in out


def test_compile_save_then_run_the_directory(model_file, tmp_path, capsys, backend):
    code, out, _ = run_cli(capsys, "compile", model_file, "-o", tmp_path / "build", "--backend", backend,
                           "--threads", "1")
    assert code == 0 and "compiled 'tiny'" in out
    assert {p.name for p in (tmp_path / "build").iterdir()} == {"libtiny.so", "tiny.h", "main.c"}
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = convgen.compile(tiny_graph(), backend=backend)(x)
    for model in (model_file, tmp_path / "build"):
        code, out, _ = run_cli(capsys, "run", model, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
                               "--backend", backend)
        assert code == 0 and ": float32[1, 4, 4, 4]" in out
        assert_close(np.load(tmp_path / "y.npy"), expected)


def test_show_code(model_file, capsys, backend):
    code, out, _ = run_cli(capsys, "show-code", model_file, "--layer", "0", "--backend", backend)
    assert code == 0
    if backend == "c":
        assert out.startswith('/* layer "0"') and "for (" in out
    else:
        assert "define" in out and "fma" in out
    code, out, _ = run_cli(capsys, "show-code", model_file, "--backend", backend)
    assert code == 0 and ("tiny_forward" in out)


def test_show_code_of_an_unknown_layer_lists_the_layers(model_file, capsys):
    code, _, err = run_cli(capsys, "show-code", model_file, "--layer", "nope")
    assert code == 1 and "nope" in err and "layers with kernels: ['0'" in err


def test_tune_is_passed_through_or_refused_clearly(model_file, tmp_path, capsys):
    code, out, err = run_cli(capsys, "compile", model_file, "-o", tmp_path, "--tune", "--threads", "1")
    if "tune" in inspect.signature(convgen.compile).parameters:
        assert code == 0 and (tmp_path / "libtiny.so").is_file()
    else:
        assert code == 1 and "--tune" in err and "no autotuner" in err


@pytest.mark.parametrize("content, message", [
    ("x = 1\n", "define `graph`"),
    ("graph = 3\n", "is a int, not a convgen.Graph"),
    ("from convgen import nn\na = nn.Sequential(nn.ReLU()).to_graph((1, 1, 2, 2))\n"
     "b = nn.Sequential(nn.ReLU()).to_graph((1, 1, 2, 2))\n", "module-level Graphs found: ['a', 'b']"),
])
def test_bad_model_files(tmp_path, capsys, content, message):
    path = tmp_path / "bad.py"
    path.write_text(content)
    code, _, err = run_cli(capsys, "summary", path)
    assert code == 1 and message in err


def test_model_file_names_and_functions(tmp_path, capsys):
    path = tmp_path / "two.py"
    path.write_text(textwrap.dedent("""
        from convgen import nn
        small = nn.Sequential(nn.ReLU()).to_graph((1, 1, 2, 2), name="small")
        def big():
            return nn.Sequential(nn.Conv2d(1, 3, 1)).to_graph((1, 1, 5, 5), name="big")
    """))
    assert run_cli(capsys, "summary", f"{path}:small")[1].startswith('Graph "small"')
    assert run_cli(capsys, "summary", f"{path}:big")[1].startswith('Graph "big"')
    code, _, err = run_cli(capsys, "summary", f"{path}:none")
    assert code == 1 and "defines no 'none'" in err


def test_missing_and_unsupported_files(tmp_path, capsys):
    code, _, err = run_cli(capsys, "summary", tmp_path / "absent.py")
    assert code == 1 and "no such file" in err
    (tmp_path / "weights.txt").write_text("")
    code, _, err = run_cli(capsys, "summary", tmp_path / "weights.txt")
    assert code == 1 and ".onnx file or a .py file" in err


def test_run_checks_the_input_shape(model_file, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 8, 9), np.float32))
    code, _, err = run_cli(capsys, "run", model_file, "--input", tmp_path / "x.npy")
    assert code == 1 and "expected shape (1, 2, 8, 8), got (1, 2, 8, 9)" in err


def test_demo_data_weights_match_torch():
    """The shipped weights load into the DSL's LeNet-5 and agree with torch's LeNet-5 on the shipped digits."""
    import torch
    state, images, labels = digits.load()
    assert images.shape == (len(labels), 1, 32, 32) and images.dtype == np.float32 and len(labels) >= 300
    assert 0.0 <= images.min() and images.max() <= 1.0 and set(np.unique(labels)) == set(range(10))
    net = zoo.lenet5()
    net.load_state_dict(state)
    reference = zoo.torch_lenet5().eval()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model = convgen.compile(net.to_graph((40, 1, 32, 32), name="digits"))
    with torch.no_grad():
        expected = reference(torch.from_numpy(images[:40])).numpy()
    assert_close(model(images[:40]), expected)


def test_demo(capsys, backend):
    code, out, _ = run_cli(capsys, "demo", "--backend", backend)
    assert code == 0
    accuracy = float(out.split("accuracy: ")[1].split("%")[0]) / 100
    assert accuracy >= 0.95, out           # the trained weights reach 97.5% on the 360 held-out digits
    for expected in ('Graph "lenet5"', "total params: 61,706", f"compile ({backend} backend)",
                     "latency per image", "label "):
        assert expected in out


def test_bench_runs_the_benchmark_program(capsys):
    assert cli.benchmark_program() == ROOT / "benchmarks" / "bench.py"
    code = cli.main(["bench", "--help-bench"])
    assert code == 0


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> tuple[Path, object]:
    """A small torch CNN exported with a symbolic batch axis."""
    import warnings
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5)).eval()
    path = tmp_path_factory.mktemp("onnx") / "small.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 8, 8),), str(path), dynamo=False, input_names=["image"],
                          output_names=["scores"], dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}})
    return path, net


def test_onnx_model_with_a_fixed_batch(onnx_file, tmp_path, capsys, backend):
    import torch
    path, net = onnx_file
    code, out, _ = run_cli(capsys, "summary", path, "--input-shape", "image=3,3,8,8")
    assert code == 0 and "[3, 3, 8, 8]" in out and "[3, 5]" in out
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run_cli(capsys, "run", path, "--input-shape", "image=3,3,8,8", "--input", tmp_path / "x.npy",
                             "--output", tmp_path / "y.npy", "--backend", backend)
    assert code == 0, err
    with torch.no_grad():
        assert_close(np.load(tmp_path / "y.npy"), net(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize("argument, message", [
    ("image", "expected NAME=D0,D1,..."), ("image=1,x", "expected NAME=D0,D1,..."), ("=1,2", "expected NAME="),
])
def test_bad_input_shapes(onnx_file, capsys, argument, message):
    with pytest.raises(SystemExit):
        cli.main(["summary", str(onnx_file[0]), "--input-shape", argument])
    assert message in capsys.readouterr().err


def test_input_shape_is_for_onnx_only(model_file, capsys):
    code, _, err = run_cli(capsys, "summary", model_file, "--input-shape", "input=1,2,8,8")
    assert code == 1 and "applies to ONNX models" in err


def test_several_outputs_keep_their_names_in_the_npz(tmp_path, capsys):
    """np.savez(path, **outputs) refuses outputs named `file` or `allow_pickle`; the CLI writes them all."""
    import onnx
    from onnx import TensorProto, helper
    names = ["file", "allow_pickle", "/relu/Relu_output_0"]
    nodes = [helper.make_node("Relu", ["x"], [names[0]]), helper.make_node("Neg", ["x"], [names[1]]),
             helper.make_node("Abs", ["x"], [names[2]])]
    graph = helper.make_graph(nodes, "three", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 3]) for n in names])
    path = tmp_path / "three.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = np.random.default_rng(2).standard_normal((1, 2, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, _, err = run_cli(capsys, "run", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y")
    assert code == 0, err
    with np.load(tmp_path / "y.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == sorted(names)
        for name, expected in zip(names, (np.maximum(x, 0), -x, np.abs(x))):
            np.testing.assert_array_equal(saved[name], expected)
