"""Recognize activations that exporters spell as several elementwise nodes, and make each one node.

torch's exporters write SiLU as Sigmoid -> Mul, GELU as x * 0.5 * (1 + Erf(x / sqrt 2)) or as its
tanh polynomial, Hardswish (before opset 14) as x * HardSigmoid(x), in whatever order and
association the exporter's decomposition happens to produce.  Rather than one structural pattern
per spelling, a candidate is matched by value: a connected set of elementwise nodes that reads one
run-time value x (and otherwise only scalar constants), whose interior values nobody else reads,
is evaluated in float64 on sample points and compared with each activation in CANDIDATES, and with
softplus(beta, threshold) for the betas and thresholds among the set's scalars (torch's dynamo
exporter writes Softplus as Where(beta * x > threshold, x, Softplus(beta * x) / beta)).  A set
that agrees to 1e-6 everywhere becomes that one activation node (then fusable into a conv).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from ..ops import Activation
from ..ops.binary import evaluate

CANDIDATES = (Activation("silu"), Activation("gelu"), Activation("gelu_tanh"), Activation("mish"),
              Activation("hard_swish"), Activation("hard_sigmoid", (1.0 / 6.0, 0.5)))
SCALAR_OPS = ("add", "sub", "mul", "div", "greater", "less", "greater_equal", "less_equal")
MAX_NODES = 10   # the longest spelling (GELU's tanh form) has 9 nodes
# the sample points: every branch of every candidate (hard sigmoid's corners at -3 and 3, mish's 20)
SAMPLES = np.concatenate([np.linspace(-8.0, 8.0, 161), [-30.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 25.0]])


class _Graph:
    """The graph's producer and consumer maps, built once per pass."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.producer = {v: n for n in graph.nodes for v in n.outputs}
        self.readers: dict[str, int] = {}
        for n in graph.nodes:
            for v in n.inputs:
                self.readers[v] = self.readers.get(v, 0) + 1

    def scalar(self, value: str) -> float | None:
        c = self.graph.constants.get(value)
        return float(c.reshape(-1)[0]) if c is not None and c.size == 1 else None

    def elementwise(self, node: Node) -> bool:
        """A node the matcher may absorb: an activation, or scalar-constant arithmetic on one value."""
        if node.op == "activation":
            return True
        if node.op == "where":   # a selection between values of the set
            return node.attrs.activation is None
        if node.op not in SCALAR_OPS or node.attrs.activation is not None:
            return False
        return sum(self.scalar(v) is None for v in node.inputs) >= 1 and len(node.inputs) == 2


def _cone(g: _Graph, root: Node, x: str) -> list[Node] | None:
    """The nodes between x and root (root included) when they form a closed elementwise function of x."""
    nodes: dict[str, Node] = {}
    pending = [root]
    while pending:
        node = pending.pop()
        if node.name in nodes:
            continue
        if len(nodes) == MAX_NODES or not g.elementwise(node) or node.type != g.graph.type_of(x):
            return None
        nodes[node.name] = node
        for v in node.inputs:
            if v == x or g.scalar(v) is not None:
                continue
            producer = g.producer.get(v)
            if producer is None:
                return None
            pending.append(producer)
    interior = [n for n in nodes.values() if n is not root]
    inside_reads = {}
    for n in nodes.values():
        for v in n.inputs:
            inside_reads[v] = inside_reads.get(v, 0) + 1
    for n in interior:
        if n.output in g.graph.outputs or g.readers.get(n.output, 0) != inside_reads.get(n.output, 0):
            return None  # an interior value read elsewhere must stay computed
    order = {n.name: i for i, n in enumerate(g.graph.nodes)}
    return sorted(nodes.values(), key=lambda n: order[n.name])


def _evaluate(g: _Graph, cone: list[Node], x: str) -> np.ndarray:
    values = {x: SAMPLES}
    with np.errstate(all="ignore"):
        for node in cone:
            args = [values[v] if v in values else g.scalar(v) for v in node.inputs]
            if node.op == "activation":
                values[node.output] = node.attrs.apply(args[0])
            else:
                values[node.output] = evaluate(node.op, *(np.float64(a) for a in args))
    return values[cone[-1].output]


def _candidates(g: _Graph, cone: list[Node]) -> list[Activation]:
    """CANDIDATES, after softplus with each beta and threshold the cone's scalars could be."""
    scalars = {abs(c) for n in cone for v in n.inputs
               if (c := g.scalar(v)) is not None and c != 0 and np.isfinite(c) and np.isfinite(1.0 / c)}
    if not any(n.op == "where" for n in cone):
        return list(CANDIDATES)
    betas = sorted(scalars | {1.0 / c for c in scalars} | {1.0})
    return [Activation("softplus", (b, t)) for b in betas for t in sorted(scalars | {20.0})] + list(CANDIDATES)


def _match(g: _Graph, root: Node) -> tuple[list[Node], str, Activation] | None:
    """The largest cone ending at root that is one candidate activation of its input."""
    upstream, frontier = [], [root]
    while frontier and len(upstream) < MAX_NODES:
        node = frontier.pop(0)
        for v in node.inputs:
            if g.scalar(v) is None and v not in upstream:
                upstream.append(v)
                producer = g.producer.get(v)
                if producer is not None and g.elementwise(producer):
                    frontier.append(producer)
    for x in reversed(upstream):  # the farthest inputs first: the largest cones
        cone = _cone(g, root, x)
        if cone is None or len(cone) < 2:
            continue
        y = _evaluate(g, cone, x)
        for candidate in _candidates(g, cone):
            expected = candidate.apply(SAMPLES)
            if np.all(np.abs(y - expected) <= 1e-6 * (1.0 + np.abs(expected))):
                return cone, x, candidate
    return None


def match_activations(graph: Graph) -> Graph:
    """Each multi-node spelling of a CANDIDATES activation becomes one activation node."""
    while True:
        g = _Graph(graph)
        for root in reversed(graph.nodes):
            if not g.elementwise(root):
                continue
            found = _match(g, root)
            if found is not None:
                break
        else:
            return graph
        cone, x, activation = found
        dropped = {n.name for n in cone}
        fused = Node(root.name, "activation", activation, (x,), root.outputs, root.types)
        nodes = [fused if n.name == root.name else n for n in graph.nodes if n.name not in dropped or n is root]
        graph = graph.with_read_constants(nodes)
