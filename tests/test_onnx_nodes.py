"""Conformance: ONNX's own backend node tests, for every op type convgen imports, on every backend.

Each case either runs and matches ONNX's expected outputs (within the case's own tolerances,
as onnx's backend runner compares), or is listed in REJECTED with the reason convgen refuses
it at import, and the test checks that it is refused with that reason.  Rejected cases are not
counted as passes; the terminal summary prints the passes per op type and backend.
"""
from __future__ import annotations

import fnmatch

import numpy as np
import pytest

import convgen
from onnx_node_cases import frozen, node_cases

# case-name pattern -> what convgen says when it refuses the case at import
REJECTED: dict[str, str] = {
    # integer arithmetic (convgen computes in float32, which would neither wrap nor hold 32-bit values)
    "test_add_*int*": "element type u?int",
    "test_div_*int*": "element type u?int",
    "test_mul_*int*": "element type u?int",
    "test_sub_*int*": "element type u?int",
    "test_m[ai][xn]_*int[36]*": "element type u?int",
    "test_m[ai][xn]_uint16": "element type uint16",
    "test_pow_types_*int*": "element type u?int",
    "test_pow_bcast_scalar": "is a scalar",
    "test_[erw]*_pad": "element type int32",
    # element types convgen does not have (8-, 4- and 2-bit floats and integers)
    "test_cast_*FLOAT8*": "element type",
    "test_cast_*FLOAT4*": "element type",
    "test_cast_*INT[24]*": "element type",
    "test_cast_e8m0_*": "element type",
    "test_identity_opt": "element type 0",
    "test_identity_sequence": "element type 0",
    # empty outputs known at import (convgen's tensors have no empty axes)
    "test_shape_start_greater_than_end": "is empty",
    "test_constantofshape_int_shape_zero": "is empty",
    "test_reshape_allowzero_reordered": "every dimension must be >= 1",
    "test_gemm_default_scalar_bias": "is a scalar",
    # training-time behaviour
    "test_batchnorm_*_training_mode": "training_mode=1",
    "test_training_dropout": "training_mode=1",
    "test_layer_normalization_*": "Mean and InvStdDev outputs",   # every case asks for the training statistics
    "test_training_dropout_default*": "training_mode=1",
    "test_training_dropout_mask": "training_mode=1",
    # an empty output (convgen's tensors have no empty axes)
    "test_slice_start_out_of_bounds": "no empty axes",
    "test_split_zero_size_splits_*": "every dimension must be >= 1",
    # reductions of an empty axis (convgen's tensors have none)
    "test_reduce_*_empty_set*": "every dimension must be >= 1",
    # batched MatMul (B of rank 3 or more): convgen has no batched matrix product
    "test_matmul_[34]d": "no batched matrix product",
    "test_matmul_1d_3d": "no batched matrix product",
    "test_matmul_bcast": "no batched matrix product",
    # comparisons of integers float32 does not hold exactly, of types convgen does not have, of strings
    "test_equal": "element type int32",
    "test_equal_bcast": "element type int32",
    "test_[egl]*_uint[136][624]": "element type uint(16|32|64)",
    "test_equal_string*": "not a number type",
    "test_where_long_example": "element type int64",
    "test_gathernd_example_int32*": "element type int32",
}

# case name -> why onnxruntime, not onnx's numpy reference, is the oracle (the two disagree; convgen
# follows onnxruntime)
ONNXRUNTIME_IS_THE_ORACLE: dict[str, str] = {
    # align_corners with a downscale: onnx's reference divides by in * scale - 1 (here 1.4), onnxruntime by
    # the output size - 1 (here 1), as the spec's formula says
    "test_resize_downsample_scales_linear_align_corners": "length_resized",
    "test_resize_downsample_scales_cubic_align_corners": "length_resized",
}


def rejection(name: str) -> str | None:
    for pattern, reason in REJECTED.items():
        if fnmatch.fnmatchcase(name, pattern):
            return reason
    return None


CASES = node_cases()
RUNS = sorted(n for n in CASES if rejection(n) is None)
REFUSED = sorted(n for n in CASES if rejection(n) is not None)


def test_cases_were_generated():
    """The harness found cases of the core ops (a broken generator must not look like a pass)."""
    ops = {CASES[n].op_type for n in RUNS}
    assert {"Conv", "MaxPool", "AveragePool", "Relu", "Concat", "Softmax", "BatchNormalization"} <= ops


@pytest.mark.parametrize("name", RUNS)
def test_node_case(name, backend, record_property):
    case = CASES[name]
    model, arrays = frozen(case)
    compiled = convgen.compile(convgen.from_onnx(model), backend=backend)
    outputs = compiled(*arrays)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    wanted = case.outputs
    if name in ONNXRUNTIME_IS_THE_ORACLE:
        import onnxruntime
        session = onnxruntime.InferenceSession(model.SerializeToString())
        wanted = tuple(session.run(None, {i.name: a for i, a in zip(session.get_inputs(), arrays)}))
    assert len(outputs) == len(wanted)
    for actual, expected in zip(outputs, wanted):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, rtol=case.rtol, atol=max(case.atol, 1e-6))
    record_property("onnx_op", case.op_type)


@pytest.mark.parametrize("name", REFUSED)
def test_node_case_refused(name):
    """Refused at import with a clear, specific reason, never a crash or a wrong answer."""
    model, _ = frozen(CASES[name])
    with pytest.raises(convgen.ConvgenError, match=rejection(name)):
        convgen.from_onnx(model)
