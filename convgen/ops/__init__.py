"""Op families.  Importing this package registers every op."""
from . import activation, binary, cast, conv, conv_transpose, dense, elementwise, lp_pool, lrn, matmul, movement, norm, pad, pool, reduce, resample, shape_ops  # noqa: F401,E501
from .activation import Activation
from .conv import ConvAttrs, LocallyConnectedAttrs
from .conv_transpose import ConvTransposeAttrs
from .dense import LinearAttrs, SoftmaxAttrs
from .binary import AddAttrs, BinaryAttrs
from .cast import CastAttrs, DequantizeAttrs, QuantizeAttrs
from .elementwise import BatchNormAttrs
from .lp_pool import GlobalLpPoolAttrs, LpPoolAttrs
from .lrn import LRNAttrs
from .matmul import GemmAttrs, MatMulAttrs
from .movement import ExpandAttrs, SliceAttrs
from .norm import GroupNormAttrs, InstanceNormAttrs, LayerNormAttrs
from .pad import PadAttrs
from .pool import GlobalPoolAttrs, PoolAttrs
from .reduce import ReduceAttrs
from .resample import ResampleAttrs
from .registry import OPS, OpDef, get, register, run_reference
from .shape_ops import ConcatAttrs, FlattenAttrs, ReshapeAttrs, TransposeAttrs

__all__ = ["OPS", "OpDef", "get", "register", "run_reference", "Activation", "ConvAttrs",
           "LocallyConnectedAttrs", "ConvTransposeAttrs", "LinearAttrs", "SoftmaxAttrs", "AddAttrs", "BinaryAttrs",
           "BatchNormAttrs", "LpPoolAttrs", "GlobalLpPoolAttrs", "GlobalPoolAttrs", "PoolAttrs", "ConcatAttrs",
           "FlattenAttrs", "ReshapeAttrs", "TransposeAttrs", "PadAttrs", "LRNAttrs", "GemmAttrs", "MatMulAttrs",
           "CastAttrs", "QuantizeAttrs", "DequantizeAttrs", "SliceAttrs", "ExpandAttrs", "ReduceAttrs", "ResampleAttrs",
           "LayerNormAttrs", "InstanceNormAttrs", "GroupNormAttrs"]
