"""Helpers over llvmlite's IRBuilder so kernels read like the C templates they mirror.

`Index` is an int64 value whose + - * // % emit instructions (folding Python ints), `Ptr` is a
typed pointer whose `p + i`, `p[i]` and `p[i] = v` emit GEPs, loads and stores, and loops are
context managers: `with e.loop(N) as n:` is `for (int64_t n = 0; n < N; n++)`.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence, Union

from llvmlite import ir

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()
HALF = ir.HalfType()
PTR = ir.PointerType()
VOID = ir.VoidType()

IntLike = Union["Index", int]


def vector(width: int) -> ir.VectorType:
    return ir.VectorType(F32, width)


class Index:
    """An int64 SSA value with C-like arithmetic (all index values are non-negative or small)."""

    def __init__(self, e: "Emitter", value: ir.Value) -> None:
        self.e, self.value = e, value

    def _binop(self, op: str, other: IntLike, swap: bool = False) -> "Index":
        lhs, rhs = (other, self) if swap else (self, other)
        return self.e.int_op(op, lhs, rhs)

    def __add__(self, other: IntLike) -> "Index":
        return self._binop("+", other)

    def __radd__(self, other: int) -> "Index":
        return self._binop("+", other, swap=True)

    def __sub__(self, other: IntLike) -> "Index":
        return self._binop("-", other)

    def __rsub__(self, other: int) -> "Index":
        return self._binop("-", other, swap=True)

    def __mul__(self, other: IntLike) -> "Index":
        return self._binop("*", other)

    def __rmul__(self, other: int) -> "Index":
        return self._binop("*", other, swap=True)

    def __floordiv__(self, other: int) -> "Index":
        return self._binop("//", other)

    def __mod__(self, other: int) -> "Index":
        return self._binop("%", other)


class Ptr:
    """A pointer to elements of `etype` (float unless said otherwise)."""

    def __init__(self, e: "Emitter", value: ir.Value, etype: ir.Type = F32) -> None:
        self.e, self.value, self.etype = e, value, etype

    @property
    def align(self) -> int:
        """The element's natural alignment (its size)."""
        if isinstance(self.etype, ir.IntType):
            return self.etype.width // 8
        return 8 if self.etype == F64 else 2 if self.etype == HALF else 4

    def __add__(self, offset: IntLike) -> "Ptr":
        if isinstance(offset, int) and offset == 0:
            return self
        gep = self.e.b.gep(self.value, [self.e.int_value(offset)], inbounds=True, source_etype=self.etype)
        return Ptr(self.e, gep, self.etype)

    def __getitem__(self, index: IntLike) -> ir.Value:
        return self.e.b.load((self + index).value, typ=self.etype, align=self.align)

    def __setitem__(self, index: IntLike, value: ir.Value) -> None:
        self.e.b.store(value, (self + index).value, align=self.align)

    def load_vector(self, index: IntLike, width: int) -> ir.Value:
        """An unaligned load of `width` consecutive floats (the templates' vfNu types)."""
        return self.e.b.load((self + index).value, typ=vector(width), align=4)


class Var:
    """A mutable local (a C variable): a stack slot that mem2reg turns back into SSA values."""

    def __init__(self, e: "Emitter", typ: ir.Type, initial: ir.Value, name: str = "") -> None:
        self.e, self.typ = e, typ
        self.slot = e.alloca(typ, name=name)
        self.set(initial)

    def get(self) -> ir.Value:
        return self.e.b.load(self.slot, typ=self.typ)

    def set(self, value: ir.Value) -> None:
        self.e.b.store(value, self.slot)


class Emitter:
    """Emits into one function: integer and float arithmetic, memory, loops, intrinsics."""

    def __init__(self, function: ir.Function, fma: bool = True) -> None:
        self.function = function
        self.module: ir.Module = function.module
        self.fma_available = fma
        # the entry block holds only the stack slots; code starts in the block after it
        entry = function.append_basic_block("entry")
        start = function.append_basic_block("start")
        self._entry_branch = ir.IRBuilder(entry).branch(start)
        self.b = ir.IRBuilder(start)

    def sibling(self, function: ir.Function) -> "Emitter":
        """An emitter for another function of the same module."""
        return Emitter(function, self.fma_available)

    # -- function arguments -------------------------------------------------------------
    def arg_index(self, i: int) -> Index:
        return Index(self, self.function.args[i])

    def arg_ptr(self, i: int, etype: ir.Type = F32) -> Ptr:
        return Ptr(self, self.function.args[i], etype)

    # -- integers -----------------------------------------------------------------------
    def int_value(self, x: IntLike) -> ir.Value:
        return x.value if isinstance(x, Index) else ir.Constant(I64, x)

    def const(self, x: int) -> Index:
        return Index(self, ir.Constant(I64, x))

    def int_op(self, op: str, lhs: IntLike, rhs: IntLike) -> Index:
        if isinstance(lhs, int) and isinstance(rhs, int):
            return self.const(_fold(op, lhs, rhs))
        if op == "+" and rhs == 0 or op == "-" and rhs == 0 or op in ("*", "//") and rhs == 1:
            return lhs  # type: ignore[return-value]
        if op == "+" and lhs == 0 or op == "*" and lhs == 1:
            return rhs  # type: ignore[return-value]
        if op == "*" and (lhs == 0 or rhs == 0):
            return self.const(0)
        a, b = self.int_value(lhs), self.int_value(rhs)
        if op in ("+", "-", "*"):
            fn = {"+": self.b.add, "-": self.b.sub, "*": self.b.mul}[op]
            return Index(self, fn(a, b, flags=("nsw",)))
        # divisions and remainders only ever see non-negative operands
        return Index(self, self.b.udiv(a, b) if op == "//" else self.b.urem(a, b))

    def icmp(self, op: str, lhs: IntLike, rhs: IntLike) -> ir.Value:
        return self.b.icmp_signed(op, self.int_value(lhs), self.int_value(rhs))

    def imin(self, a: IntLike, b: IntLike) -> IntLike:
        if isinstance(a, int) and isinstance(b, int):
            return min(a, b)
        return Index(self, self.b.select(self.icmp("<", a, b), self.int_value(a), self.int_value(b)))

    def iselect(self, condition: ir.Value, a: IntLike, b: IntLike) -> Index:
        return Index(self, self.b.select(condition, self.int_value(a), self.int_value(b)))

    def imax(self, a: IntLike, b: IntLike) -> IntLike:
        if isinstance(a, int) and isinstance(b, int):
            return max(a, b)
        return Index(self, self.b.select(self.icmp(">", a, b), self.int_value(a), self.int_value(b)))

    def all_of(self, conditions: Sequence[ir.Value]) -> ir.Value:
        result = conditions[0]
        for c in conditions[1:]:
            result = self.b.and_(result, c)
        return result

    # -- floats -------------------------------------------------------------------------
    @staticmethod
    def f32(x: float) -> ir.Constant:
        return ir.Constant(F32, x)

    def to_float(self, x: IntLike) -> ir.Value:
        return self.b.sitofp(self.int_value(x), F32)

    def fcmp(self, op: str, a: ir.Value, b: ir.Value) -> ir.Value:
        """An ordered comparison, like C's < > on floats (false when either side is NaN)."""
        return self.b.fcmp_ordered(op, a, b)

    def is_nan(self, x: ir.Value) -> ir.Value:
        return self.b.fcmp_unordered("uno", x, x)

    def intrinsic(self, name: str, args: Sequence[ir.Value], ret: ir.Type | None = None) -> ir.Value:
        """A call of an overloaded intrinsic, named by the type of its first argument."""
        full_name = f"{name}.{_type_suffix(args[0].type)}"
        fn = self.module.globals.get(full_name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret or args[0].type, [a.type for a in args]), full_name)
        return self.b.call(fn, list(args))

    def fma(self, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
        """a * b + c in one rounding: llvm.fma where the CPU has FMA, else llvm.fmuladd."""
        return self.intrinsic("llvm.fma" if self.fma_available else "llvm.fmuladd", [a, b, c])

    def muladd(self, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
        """The C expression a * b + c, which gcc contracts into an FMA where it can."""
        return self.intrinsic("llvm.fmuladd", [a, b, c])

    # -- vectors ------------------------------------------------------------------------
    def splat(self, x: ir.Value, width: int) -> ir.Value:
        one = self.b.insert_element(ir.Constant(vector(width), ir.Undefined), x, ir.Constant(I32, 0))
        return self.b.shuffle_vector(one, ir.Constant(vector(width), ir.Undefined),
                                     ir.Constant(ir.VectorType(I32, width), [0] * width))

    @staticmethod
    def zeros(width: int) -> ir.Value:
        return ir.Constant(vector(width), None)

    # -- memory -------------------------------------------------------------------------
    def alloca(self, typ: ir.Type, name: str = "") -> ir.Value:
        """A stack slot at the top of the entry block, where SROA promotes it to registers."""
        entry_builder = ir.IRBuilder()
        entry_builder.position_before(self._entry_branch)
        slot = entry_builder.alloca(typ, name=name)
        slot.type = PTR  # an opaque pointer, like every other: llvmlite would track the pointee
        return slot

    def var(self, initial: ir.Value, name: str = "") -> Var:
        return Var(self, initial.type, initial, name)

    def memcpy(self, dst: Ptr, src: Ptr, nbytes: IntLike) -> None:
        fn = self.module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64])
        self.b.call(fn, [dst.value, src.value, self.int_value(nbytes), ir.Constant(I1, 0)])

    def prefetch(self, address: Ptr, write: bool = False, locality: int = 2) -> None:
        """__builtin_prefetch(address, write, locality): a hint, never a fault (locality 2: into L2, as the templates)."""
        fn = self.module.globals.get("llvm.prefetch.p0") or ir.Function(
            self.module, ir.FunctionType(ir.VoidType(), [PTR, I32, I32, I32]), "llvm.prefetch.p0")
        self.b.call(fn, [address.value, ir.Constant(I32, int(write)), ir.Constant(I32, locality), ir.Constant(I32, 1)])

    def memset(self, dst: Ptr, byte: int, nbytes: IntLike) -> None:
        fn = self.module.declare_intrinsic("llvm.memset", [PTR, I64])
        self.b.call(fn, [dst.value, ir.Constant(I8, byte), self.int_value(nbytes), ir.Constant(I1, 0)])

    def constant_table(self, name: str, typ: ir.Type, values: Sequence) -> ir.GlobalVariable:
        """A private constant array (the templates' static const tables); index it through Ptr."""
        array = ir.ArrayType(typ, len(values))
        table = ir.GlobalVariable(self.module, array, name)
        table.global_constant, table.linkage = True, "private"
        table.initializer = ir.Constant(array, list(values))
        return table

    # -- control flow -------------------------------------------------------------------
    @contextlib.contextmanager
    def loop(self, stop: IntLike, start: IntLike = 0, step: int = 1, name: str = "i",
             vector_width: int = 0, unroll: bool = True) -> Iterator[Index]:
        """for (int64_t i = start; i < stop; i += step); with vector_width, a hint that the vectorizer
        take that many iterations at a time; unroll=False keeps the loop rolled."""
        before = self.b.block
        header = self.b.append_basic_block(f"{name}.cond")
        body = self.b.append_basic_block(f"{name}.body")
        done = self.b.append_basic_block(f"{name}.end")
        self.b.branch(header)
        self.b.position_at_end(header)
        i = self.b.phi(I64, name)
        i.add_incoming(self.int_value(start), before)
        self.b.cbranch(self.icmp("<", Index(self, i), stop), body, done)
        self.b.position_at_end(body)
        yield Index(self, i)
        i.add_incoming(self.b.add(i, ir.Constant(I64, step), flags=("nsw",)), self.b.block)
        back = self.b.branch(header)
        if vector_width:
            back.set_metadata("llvm.loop", self._vectorize_hint(vector_width))
        elif not unroll:
            back.set_metadata("llvm.loop", self._no_unroll())
        self.function.blocks.remove(done)  # list the exit after the body, for readable IR
        self.function.blocks.append(done)
        self.b.position_at_end(done)

    def vector_row(self, stop: int, width: int, body: Callable[[Index], None], start: int = 0,
                   name: str = "i") -> None:
        """for (i = start; i < stop; i++) body(i), for the vectorizer: whole vectors of `width`, then the
        remainder in halved vectors down to 4 lanes, then single iterations, as gcc -O3 vectorizes a
        loop's epilogue (28 = 3 x 8 + 4: not 4 scalars, nor a masked vector, whose store is slow on AMD).
        The loops are kept from full unrolling: unrolled first, short rows were SLP-vectorized 4 lanes wide."""
        done = start
        while done < stop:
            count = (stop - done) // width * width if width >= 4 else stop - done
            if count:
                with self.loop(done + count, start=done, name=name, vector_width=width if width >= 4 else 0) as i:
                    body(i)
                done += count
            width //= 2

    def _vectorize_hint(self, width: int) -> ir.MDValue:
        """A loop ID (a node that refers to itself) asking the vectorizer for `width` lanes."""
        hints = [self.module.add_metadata([ir.MetaDataString(self.module, "llvm.loop.vectorize.enable"),
                                           ir.Constant(I1, True)]),
                 self.module.add_metadata([ir.MetaDataString(self.module, "llvm.loop.vectorize.width"),
                                           ir.Constant(I32, width)]),
                 self.module.add_metadata([ir.MetaDataString(self.module, "llvm.loop.unroll.disable")])]
        loop_id = self.module.add_metadata([*hints, ir.MetaDataString(self.module, f"loop{len(self.module.metadata)}")])
        loop_id.operands = (loop_id, *hints)
        return loop_id

    def _no_unroll(self) -> ir.MDValue:
        """A loop ID asking the unroller to leave the loop rolled."""
        hint = self.module.add_metadata([ir.MetaDataString(self.module, "llvm.loop.unroll.disable")])
        loop_id = self.module.add_metadata([hint, ir.MetaDataString(self.module, f"loop{len(self.module.metadata)}")])
        loop_id.operands = (loop_id, hint)
        return loop_id

    @contextlib.contextmanager
    def nest(self, extents: Sequence[IntLike], names: Sequence[str]) -> Iterator[list[Index]]:
        """Perfectly nested loops over `extents`, outermost first."""
        with contextlib.ExitStack() as stack:
            yield [stack.enter_context(self.loop(n, name=name)) for n, name in zip(extents, names)]

    @contextlib.contextmanager
    def if_then(self, condition: ir.Value) -> Iterator[None]:
        with self.b.if_then(condition):
            yield

    def if_else(self, condition: ir.Value):
        """`with then: ...` / `with otherwise: ...`, as llvmlite's IRBuilder.if_else."""
        return self.b.if_else(condition)

    def ret(self, value: ir.Value | None = None) -> None:
        if value is None:
            self.b.ret_void()
        else:
            self.b.ret(value)


def _type_suffix(t: ir.Type) -> str:
    """The overload suffix of an intrinsic's name: f32, v16f32."""
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{_type_suffix(t.element)}"
    return "f32" if t == F32 else str(t)


def _fold(op: str, a: int, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b, "//": a // b if b else 0, "%": a % b if b else 0}[op]
