"""The DSL, the IR it builds, the summary, and loading weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import convgen
from convgen import nn
from convgen.summary import layer_stats, peak_activation_bytes

from models import BasicBlock, lenet5, numpy_state, torch_basic_block, torch_lenet5


def test_lenet5_summary_shapes_params_flops_receptive_field():
    graph = lenet5().to_graph((1, 1, 32, 32), name="lenet5")
    stats = {s.name: s for s in layer_stats(graph)}
    assert stats["0"].shape == (1, 6, 28, 28) and stats["2"].shape == (1, 6, 14, 14)
    assert stats["3"].shape == (1, 16, 10, 10) and stats["6"].shape == (1, 120, 1, 1)
    assert stats["11"].shape == (1, 10)
    # parameters: (5*5*1 + 1)*6, (5*5*6 + 1)*16, (5*5*16 + 1)*120, (120 + 1)*84, (84 + 1)*10
    assert [stats[k].params for k in ("0", "3", "6", "9", "11")] == [156, 2416, 48120, 10164, 850]
    assert sum(s.params for s in stats.values()) == sum(p.numel() for p in torch_lenet5().parameters())
    # FLOPs of C1: 2 * 6*28*28 outputs * 25 MACs, plus one bias add per output
    assert stats["0"].flops == 6 * 28 * 28 * (2 * 25 + 1)
    # receptive field grows 5, 6, 14, 16, 32 with jumps 1, 2, 2, 4, 4
    assert [stats[k].field for k in ("0", "2", "3", "5", "6")] == [
        ((5, 5), (1, 1)), ((6, 6), (2, 2)), ((14, 14), (2, 2)), ((16, 16), (4, 4)), ((32, 32), (4, 4))]
    text = graph.summary(print_fn=None)
    for expected in ("[1, 6, 28, 28]", "48,120", "32x32", "total params: 61,706", "18.4 KiB"):
        assert expected in text
    assert stats["0"].output_bytes == 6 * 28 * 28 * 4 and stats["11"].output_bytes == 10 * 4
    # the widest moment: C1's output still alive while its tanh writes another 6x28x28
    assert peak_activation_bytes(graph) == 2 * 6 * 28 * 28 * 4
    assert "peak of live activations 36.8 KiB" in text


def test_peak_activation_bytes_keeps_residual_inputs_alive():
    x = nn.Input((1, 4, 8, 8))
    y = nn.relu(nn.Conv2d(4, 4, 3, padding=1)(x))
    graph = nn.graph(nn.Conv2d(4, 4, 1)(y) + x)
    one = 4 * 8 * 8 * 4
    assert peak_activation_bytes(graph) == 3 * one   # x (kept for the add), the conv output, its relu


def test_summary_prints(capsys):
    nn.Sequential(nn.Conv2d(3, 4, 3, dilation=2)).to_graph((1, 3, 9, 9)).summary()
    out = capsys.readouterr().out
    assert "conv" in out and "[1, 4, 5, 5]" in out and "5x5" in out  # dilated 3x3 sees 5x5


def test_receptive_field_of_dilated_and_strided_stack():
    net = nn.Sequential(nn.Conv1d(1, 1, 3), nn.Conv1d(1, 1, 3, stride=2), nn.Conv1d(1, 1, 3, dilation=2))
    fields = [s.field for s in layer_stats(net.to_graph((1, 1, 40)))]
    # r = 3; r = 3 + 2*1 = 5, j = 2; r = 5 + (5 - 1)*2 = 13
    assert fields == [((3,), (1,)), ((5,), (2,)), ((13,), (2,))]


def test_state_dict_names_match_torch_and_load():
    reference = torch_basic_block(8, 16, stride=2)
    block = BasicBlock(8, 16, stride=2)
    assert list(block.state_dict()) == [k for k in reference.state_dict() if not k.endswith("num_batches_tracked")]
    state = numpy_state(reference)
    block.load_state_dict(state)
    np.testing.assert_array_equal(block.conv1.param("weight"), state["conv1.weight"])
    np.testing.assert_array_equal(block.downsample[1].param("running_var"), state["downsample.1.running_var"])


def test_load_state_dict_reports_missing_unexpected_and_bad_shapes():
    net = lenet5()
    state = net.state_dict()
    with pytest.raises(convgen.ConvgenError, match="missing keys.*0.bias.*unexpected keys.*extra"):
        net.load_state_dict({**{k: v for k, v in state.items() if k != "0.bias"}, "extra": np.zeros(1)})
    with pytest.raises(convgen.ShapeError, match="0.weight"):
        net.load_state_dict({**state, "0.weight": np.zeros((6, 1, 3, 3))})


def test_seeded_initialisation_is_reproducible():
    nn.manual_seed(7)
    a = nn.Conv2d(3, 4, 3).param("weight")
    nn.manual_seed(7)
    b = nn.Conv2d(3, 4, 3).param("weight")
    np.testing.assert_array_equal(a, b)
    bound = 1 / np.sqrt(3 * 9)
    assert np.abs(a).max() <= bound  # torch's default uniform bound


def test_layer_called_twice_gets_unique_node_names():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu = nn.ReLU()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.relu(self.conv(self.relu(x)))

    graph = Twice().to_graph((1, 2, 4, 4))
    assert [n.name for n in graph.nodes] == ["relu", "conv", "relu_1"]
    assert list(graph.constants) == ["conv.weight", "conv.bias"]


def test_graph_is_immutable_and_rejects_dangling_edges():
    graph = lenet5().to_graph((1, 1, 32, 32))
    with pytest.raises(AttributeError):
        graph.name = "other"
    with pytest.raises(TypeError):
        graph.constants["0.weight"] = np.zeros(1)
    assert not graph.constants["0.weight"].flags.writeable
    bad = graph.nodes[1].__class__("x", "activation", graph.nodes[1].attrs, ("nowhere",), ("x",),
                                   graph.nodes[1].types)
    with pytest.raises(convgen.ConvgenError, match="nowhere"):
        graph.with_nodes(graph.nodes + (bad,))


@pytest.mark.parametrize("build, message", [
    (lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(4, 8, 3)).to_graph((1, 3, 8, 8)),
     r"layer '1' \(Conv2d\): axis 1 \(channels\): input has 8 channels, the layer expects 4"),
    (lambda: nn.Sequential(nn.Conv2d(3, 8, 7)).to_graph((1, 3, 5, 9)),
     r"layer '0' \(Conv2d\): spatial axis 0 \(tensor axis 2\): input size 5 .* dilated kernel 7"),
    (lambda: nn.Sequential(nn.Conv2d(6, 8, 3, groups=4)),
     r"in_channels=6 is not divisible by groups=4"),
    (lambda: nn.Sequential(nn.MaxPool2d(2, padding=2)).to_graph((1, 1, 8, 8)),
     r"layer '0' \(MaxPool2d\): spatial axis 0 .* padding \(2, 2\) is larger than the kernel allows"),
    (lambda: nn.Sequential(nn.Conv2d(1, 1, 3)).to_graph((1, 1, 8)),
     r"must have rank 4"),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(10, 2)).to_graph((1, 1, 3, 3)),
     r"input has 9 features, the layer expects in_features=10"),
    (lambda: (lambda x: x + nn.Input((1, 3, 4, 4), name="b", tracer=x.tracer))(nn.Input((1, 2, 4, 4))),
     r"layer 'add0' \(add\): axis 1 .*cannot broadcast sizes \[2, 3\] .*\(1, 2, 4, 4\), \(1, 3, 4, 4\)"),
])
def test_shape_errors_name_layer_axis_and_numbers(build, message):
    with pytest.raises(convgen.ShapeError, match=message):
        build()


def test_dag_inputs_and_multiple_outputs():
    x = nn.Input((1, 3, 8, 8), name="left")
    y = nn.Input((1, 3, 8, 8), name="right", tracer=x.tracer)
    s = x + y
    graph = nn.graph(nn.relu(s), nn.GlobalAvgPool()(s), name="two_heads")
    assert graph.input_names == ("left", "right")
    assert [graph.type_of(v).shape for v in graph.outputs] == [(1, 3, 8, 8), (1, 3, 1, 1)]


def test_calling_a_layer_on_an_array_explains_how_to_run():
    with pytest.raises(convgen.ConvgenError, match="compile"):
        nn.Conv2d(1, 1, 3)(np.zeros((1, 1, 5, 5), np.float32))


def test_module_repr_reads_like_torch():
    text = repr(lenet5())
    assert text.startswith("Sequential(") and "(0): Conv2d(1, 6, kernel_size=(5, 5)" in text


def test_torch_is_the_pinned_version():
    assert torch.__version__.split("+")[0] == "2.13.0"


def test_modules_traced_once_can_join_a_dag_later():
    head, tail = nn.Sequential(nn.Conv2d(1, 2, 3)), nn.Sequential(nn.Conv2d(1, 2, 3))
    head.to_graph((1, 1, 8, 8))
    tail.to_graph((1, 1, 8, 8))
    x = nn.Input((1, 1, 8, 8))
    graph = nn.graph(head(x), tail(x))
    assert len(graph.constants) == 4
