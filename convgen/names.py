"""C identifiers from arbitrary names (DSL layer names, ONNX value names, graph names).

A name from a user or a model file never reaches generated code as is: it becomes
`identifier(name)` (ASCII letters, digits and underscores, not starting with a digit or an
underscore, at most MAX_LENGTH characters) and, for the run function's parameters,
`unique_identifiers`, which also avoids C keywords, the names the run function itself uses
and the macros of the headers it includes, and keeps every parameter distinct even when
upper-cased (the generated header's macros are <PREFIX>_<IDENT>_DIM0, ...).  Comments and
string literals get the name escaped instead (backends/c.py: c_comment, c_string).
"""
from __future__ import annotations

import hashlib
import itertools
import re
from typing import Iterable

MAX_LENGTH = 48

C_KEYWORDS = frozenset("""
    auto break case char const continue default do double else enum extern float for goto if inline int long
    register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while
    asm typeof alignas alignof bool complex imaginary noreturn static_assert thread_local true false
""".split())

# What model.c.j2's run function declares or calls, and the object-like macros of the headers it
# includes that an identifier() can produce (no leading underscore): a parameter of that name breaks
# the build.  Upper-case macros are matched case-insensitively below.
RUN_FUNCTION_NAMES = frozenset({"workspace", "arena", "owned", "aligned_alloc", "free", "memcpy", "scratch",
                                "weights", "batch", "status", "ctx", "workspace_bytes",
                                "size_t", "int64_t", "int32_t", "uint8_t", "vf4", "vf8", "vf16", "vf4u", "vf8u",
                                "vf16u", "linux", "unix", "i386", "errno", "math_errhandling", "alloca"})
HEADER_MACRO = re.compile(r"NULL|NAN|INFINITY|HUGE_VAL[FL]?|EXPORT|M_\w+|FP_\w+|U?INT\w*_(MAX|MIN|C)|SIZE_MAX"
                          r"|PTRDIFF_\w+|SIG_ATOMIC_\w+|W?CHAR_\w+|WINT_\w+|RAND_MAX|MB_CUR_MAX|EXIT_\w+|MATH_ERR\w+"
                          r"|(BIG|LITTLE|PDP)_ENDIAN|BYTE_ORDER|FD_\w+|NFDBITS"
                          r"|W(NOHANG|UNTRACED|CONTINUED|EXITED|NOWAIT|STOPPED|EXITSTATUS|TERMSIG|STOPSIG|IF\w+)")


def fragment(name: str) -> str:
    """`name` as identifier characters (to follow a fixed prefix); long names keep a hash of the original."""
    text = re.sub(r"\W", "_", str(name), flags=re.ASCII)
    if len(text) > MAX_LENGTH:
        digest = hashlib.sha256(str(name).encode("utf-8", "surrogatepass")).hexdigest()[:8]
        text = f"{text[:MAX_LENGTH - 9]}_{digest}"
    return text


def identifier(name: str) -> str:
    """A C-safe identifier derived from any name: letters, digits, underscores, not starting with a
    digit or an underscore, at most MAX_LENGTH + 2 characters."""
    ident = fragment(name).strip("_") or "model"
    return ident if not ident[0].isdigit() else f"m_{ident}"


def is_reserved(ident: str) -> bool:
    """A name a run-function parameter must not take (macros are matched case-sensitively, as cpp does)."""
    return (ident.lower() in C_KEYWORDS or ident in RUN_FUNCTION_NAMES or HEADER_MACRO.fullmatch(ident) is not None
            or re.match(r"layer\d+_", ident) is not None)   # the kernel functions' names


def unique_identifiers(names: Iterable[str], taken: Iterable[str] = ()) -> list[str]:
    """identifier() of each name, made distinct (also case-insensitively), not reserved and not in `taken`.

    A reserved identifier gets the prefix v_ (nothing reserved starts with it); a repeated one a
    numeric suffix.
    """
    used = {t.upper() for t in taken}
    result = []
    for name in names:
        base = identifier(name)
        for n in itertools.count():
            ident = base if n == 0 else f"{base}_{n}"
            ident = f"v_{ident}" if is_reserved(ident) else ident
            if ident.upper() not in used:
                break
        used.add(ident.upper())
        result.append(ident)
    return result
