"""Op families.  Importing this package registers every op."""
from . import activation, binary, conv, dense, elementwise, pool, shape_ops  # noqa: F401  (registration)
from .activation import Activation
from .conv import ConvAttrs, LocallyConnectedAttrs
from .dense import LinearAttrs, SoftmaxAttrs
from .binary import AddAttrs, BinaryAttrs
from .elementwise import BatchNormAttrs
from .pool import GlobalPoolAttrs, PoolAttrs
from .registry import OPS, OpDef, get, register, run_reference
from .shape_ops import ConcatAttrs, FlattenAttrs, ReshapeAttrs, TransposeAttrs

__all__ = ["OPS", "OpDef", "get", "register", "run_reference", "Activation", "ConvAttrs",
           "LocallyConnectedAttrs", "LinearAttrs", "SoftmaxAttrs", "AddAttrs", "BinaryAttrs", "BatchNormAttrs",
           "GlobalPoolAttrs", "PoolAttrs", "ConcatAttrs", "FlattenAttrs",
           "ReshapeAttrs", "TransposeAttrs"]
