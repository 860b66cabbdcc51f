"""Parameter arrays of the DSL's layers: torch's initialisation from one seeded generator, and the
checks every constructor applies to sizes."""
from __future__ import annotations

import math
import operator
from typing import Sequence

import numpy as np

from ..errors import ShapeError


_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Seed the generator that initialises new layers' parameters."""
    global _rng
    _rng = np.random.default_rng(seed)


# The most elements one parameter array may have (4 GiB of float32): a constructor given an absurd size
# (Linear(2**31, 1), BatchNorm2d(10**12)) must fail clearly rather than allocate until the OS kills it.
MAX_PARAMETER_ELEMENTS = 1 << 30


def _int(value) -> int:
    """A count or size argument as int(): TypeError or ValueError for what is none (inf too, which int()
    turns into OverflowError)."""
    try:
        return int(value)
    except OverflowError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def _parameter_shape(owner: str, shape: Sequence[int]) -> tuple[int, ...]:
    """`shape` as ints (TypeError for floats, as numpy), ShapeError past MAX_PARAMETER_ELEMENTS (negative
    sizes: numpy's ValueError later)."""
    shape = tuple(operator.index(d) for d in shape)
    count = math.prod(shape)
    if count > MAX_PARAMETER_ELEMENTS:
        raise ShapeError(f"{owner}: a parameter of shape {shape} would have {count:,} elements; "
                         f"the limit is {MAX_PARAMETER_ELEMENTS:,} (4 GiB of float32)")
    return shape


def _uniform(owner: str, shape: Sequence[int], fan_in: int) -> np.ndarray:
    bound = 1.0 / math.sqrt(max(fan_in, 1))  # torch's default (kaiming_uniform with a=sqrt(5))
    return _rng.uniform(-bound, bound, size=_parameter_shape(owner, shape)).astype(np.float32)
