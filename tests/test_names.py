"""Hostile names (quotes, comment closers, newlines, backslashes, unicode, C keywords and macros,
names equal after sanitizing) from the DSL reach the C and LLVM sources only as sanitized,
collision-free identifiers or escaped comments and strings."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgen
from convgen import nn
from convgen.backends.c import _c_comment, _c_string
from convgen.names import identifier, is_reserved, unique_identifiers

from conftest import assert_close, capped_settings, reference_outputs


HOSTILE = ['int', 'x"y', '*/ int evil; /*', 'a\nb\r\n', 'back\\', '模型', 'NULL', 'linux', 'workspace', 'arena',
           'X', 'x', 'layer0_conv_x', 'a b', 'a-b', 'a_b', 'output', '??/', 'L' * 300, '\x00nul', '0start', '_',
           'M_PI', 'restrict', 'free', 'v_int', 'INT8_MAX', '"); system("rm -rf /"); ("']
C_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
SHAPE = (1, 2, 3, 3)


class Hostile(nn.Module):
    """Layers registered under hostile attribute names, so they become the graph's layer names."""

    def __init__(self):
        super().__init__()
        for i, name in enumerate(['conv "1" */', 'int', 'a\nb\\', '模型']):
            setattr(self, name, nn.Conv2d(2, 2, 3, padding=1) if i % 2 == 0 else nn.ReLU())

    def forward(self, *inputs):
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        for module in self._modules.values():
            total = module(total)
        return total


@pytest.fixture(scope="module")
def graph():
    nn.manual_seed(4)
    return Hostile().to_graph(*[SHAPE] * len(HOSTILE), input_names=HOSTILE, name='*/ graph "g"\n??/\\')


@pytest.fixture(scope="module", params=["c", "llvm"])
def compiled(request, graph):
    return convgen.compile(graph, backend=request.param)


def test_hostile_names_compile_and_run(graph, compiled):
    assert compiled.input_names == tuple(HOSTILE)      # the signature string carries them exactly
    rng = np.random.default_rng(0)
    arrays = {name: rng.standard_normal(SHAPE).astype(np.float32) for name in HOSTILE}
    expected = reference_outputs(graph, *arrays.values())[0]
    assert_close(compiled(**arrays), expected)
    assert_close(compiled(*arrays.values()), expected)


def test_hostile_layer_names_show_their_code(graph, compiled):
    for node in graph.nodes:
        if node.op in ("conv", "add") and node.name in {n.name for n in compiled.graph.nodes}:
            code = compiled.show_code(node.name)
            assert "layer" in code.splitlines()[0]


def test_hostile_names_never_reach_the_c_source_raw(graph):
    """Outside comments and string literals the C is plain ASCII with none of the hostile text."""
    source = convgen.compile(graph, backend="c").source
    code = re.sub(r'/\*.*?\*/|"(?:\\.|[^"\\\n])*"', " ", source, flags=re.S)
    assert code.isascii() and '"' not in code and "/*" not in code and "*/" not in code
    assert "\\" not in code and "??" not in code
    for fragment in ("int evil", "system(", "rm -rf"):   # identifiers keep only their letters: int_evil
        assert fragment not in code


def test_saved_header_compiles_in_strict_c11_with_trigraphs(compiled, tmp_path):
    directory = compiled.save(tmp_path / "saved")
    if compiled.backend == "llvm" and not (directory / f"{compiled.prefix}.h").exists():
        pytest.fail("the header is written for both backends")
    header = directory / f"{compiled.prefix}.h"
    main = tmp_path / "use.c"
    main.write_text(f'#include "{header}"\nint main(void) {{ return (int){compiled.prefix.upper()}_WORKSPACE_BYTES * 0; }}\n')
    result = subprocess.run(["cc", "-std=c11", "-trigraphs", "-Wall", "-Wextra", "-pedantic-errors", "-Werror",
                             "-fsyntax-only", str(main)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_unique_identifiers_of_hostile_names():
    idents = unique_identifiers(HOSTILE)
    assert all(C_IDENT.fullmatch(i) and not is_reserved(i) for i in idents), idents
    assert len({i.upper() for i in idents}) == len(HOSTILE)
    assert max(map(len, idents)) <= 60
    assert identifier("L" * 300) != identifier("L" * 299)     # truncated names keep a hash of the whole


@given(st.lists(st.text(max_size=80), min_size=1, max_size=12))
@capped_settings(60)
def test_identifiers_are_valid_distinct_and_unreserved(names):
    idents = unique_identifiers(names, taken=["output"])
    assert all(C_IDENT.fullmatch(i) and not is_reserved(i) and len(i) <= 60 for i in idents)
    assert len({i.upper() for i in idents} | {"OUTPUT"}) == len(names) + 1


@given(st.text(max_size=200))
@capped_settings(100)
def test_comments_cannot_be_closed_or_broken(text):
    safe = _c_comment(text)
    assert "*/" not in safe and "/*" not in safe and "??" not in safe and not safe.endswith("\\")
    assert safe.isprintable()
    literal = _c_string(text)
    assert literal.startswith('"') and literal.endswith('"') and literal.isascii()
    assert '"' not in literal[1:-1].replace('\\"', "") and "\n" not in literal
