"""CompiledModel pickles by reference: other processes (multiprocessing, Dask, Ray) rebuild or reload it."""
from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pytest

import convgen
from convgen import nn

from conftest import assert_close

SHAPE = (1, 3, 10, 10)


def make_graph():
    nn.manual_seed(11)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 5 * 5, 4))
    return net.to_graph(SHAPE, name="picklable")


@pytest.fixture(scope="module", params=["c", "llvm"])
def compiled(request, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return convgen.compile(make_graph(), backend=request.param, threads=1, cache_dir=cache)


def inputs(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(n)]


def test_graph_pickles():
    graph = make_graph()
    clone = pickle.loads(pickle.dumps(graph))
    assert clone.nodes == graph.nodes and clone.inputs == graph.inputs and clone.outputs == graph.outputs
    assert all(np.array_equal(clone.constants[k], v) for k, v in graph.constants.items())
    assert not next(iter(clone.constants.values())).flags.writeable


def test_round_trip_is_small_and_equivalent(compiled):
    data = pickle.dumps(compiled)
    assert len(data) < 20_000 and b"ELF" not in data           # the graph and options, not the library
    clone = pickle.loads(data)
    assert clone is not compiled and clone.backend == compiled.backend
    assert clone.library_path == compiled.library_path         # the same cached library, not a rebuild
    x = inputs(1)[0]
    assert_close(clone(x), compiled(x), rtol=0, atol=0)
    assert clone.show_code() == compiled.show_code()
    assert pickle.loads(data) is clone                         # once per process


def test_every_compile_option_travels(compiled):
    """New compile() parameters (tuning, batch, ...) reach the rebuilding process without being listed."""
    import inspect
    _, options = compiled._recipe
    assert set(options) == set(inspect.signature(convgen.compile).parameters) - {"graph"}


def test_a_run_time_batch_survives_pickling(tmp_path):
    model = convgen.compile(make_graph(), threads=1, cache_dir=tmp_path, batch=None)
    clone = pickle.loads(pickle.dumps(model))
    x = np.concatenate(inputs(3))
    assert clone.batch is None and clone.library_path == model.library_path
    assert_close(clone(x), model(x), rtol=0, atol=0)


def test_loaded_models_pickle_by_path(compiled, tmp_path):
    loaded = convgen.load(compiled.save(tmp_path / "saved"))
    clone = pickle.loads(pickle.dumps(loaded))
    assert clone.library_path == loaded.library_path
    x = inputs(1)[0]
    assert_close(clone(x), compiled(x), rtol=0, atol=0)


def predict(model, x: np.ndarray) -> np.ndarray:
    return model(x)


def test_spawned_worker_processes(compiled):
    """Fresh interpreters (spawn, as on macOS and Windows) receive the model as a task argument."""
    xs = inputs(6)
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        results = pool.starmap(predict, [(compiled, x) for x in xs])
    for x, y in zip(xs, results):
        assert_close(y, compiled(x), rtol=0, atol=0)


def test_a_model_without_graph_or_file_refuses_to_pickle(compiled):
    orphan = pickle.loads(pickle.dumps(compiled))
    orphan._recipe, orphan.library_path = None, None
    with pytest.raises(TypeError, match="neither a graph nor a library file"):
        pickle.dumps(orphan)
