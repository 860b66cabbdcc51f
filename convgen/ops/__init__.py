"""Op families.  Importing this package registers every op."""
from . import activation, conv, dense, elementwise, pool, shape_ops  # noqa: F401  (registration)
from .activation import Activation
from .conv import ConvAttrs, LocallyConnectedAttrs
from .dense import LinearAttrs, SoftmaxAttrs
from .elementwise import AddAttrs, BatchNormAttrs
from .pool import GlobalPoolAttrs, PoolAttrs
from .registry import OPS, OpDef, get, register, run_reference
from .shape_ops import ConcatAttrs, FlattenAttrs

__all__ = ["OPS", "OpDef", "get", "register", "run_reference", "Activation", "ConvAttrs",
           "LocallyConnectedAttrs", "LinearAttrs", "SoftmaxAttrs", "AddAttrs", "BatchNormAttrs",
           "GlobalPoolAttrs", "PoolAttrs", "ConcatAttrs", "FlattenAttrs"]
