"""The free-name check: which global names a compiled module reads that nothing in it binds.

It reads the bytecode of the code object the post-application check compiled anyway (and of
every code object nested in it), so it costs a walk over instructions, not a second compile.
"""

from __future__ import annotations

import builtins
import opcode
import sys
import types

_BUILTINS = frozenset(dir(builtins))
_OP = opcode.opmap
_EXTENDED_ARG = _OP["EXTENDED_ARG"]
# LOAD_GLOBAL's argument holds the name index shifted left by one since Python 3.11.
_GLOBAL_SHIFT = 1 if sys.version_info >= (3, 11) else 0
# What each instruction that names a global or module-level name does with it: a function
# reads a global; a module or class body reads or binds a name in its own namespace first;
# `global x; x = ...` binds x anywhere.
_GLOBAL_READ, _NAME_READ, _NAME_STORE, _GLOBAL_STORE, _ANNOTATIONS = range(5)
_KINDS = {
    _OP["LOAD_GLOBAL"]: _GLOBAL_READ,
    _OP["LOAD_NAME"]: _NAME_READ,
    _OP["STORE_NAME"]: _NAME_STORE,
    _OP["DELETE_NAME"]: _NAME_STORE,
    _OP["STORE_GLOBAL"]: _GLOBAL_STORE,
    _OP["DELETE_GLOBAL"]: _GLOBAL_STORE,
    _OP["SETUP_ANNOTATIONS"]: _ANNOTATIONS,
}


def free_names(code: types.CodeType | str, filename: str = "<workflow>") -> frozenset[str]:
    """Names the module reads that no scope of it binds and that are not builtins.

    `code` is the module's compiled code (or its source, compiled here). The answer is the one
    Python's symbol tables give (a name a class body reads without binding it resolves in the
    module; like CPython, ``del x`` binds ``x``; ``match`` captures bind), except that a name
    read only in code the compiler drops as unreachable (``if False:``, after ``return``) is
    not read: it can never run.

    Raises:
        SyntaxError, ValueError: when given source that does not compile.
    """
    if isinstance(code, str):
        code = compile(code, filename, "exec", dont_inherit=True)
    bound: set[str] = set()
    read: set[str] = set()
    stack: list[tuple[types.CodeType, bool]] = [(code, True)]
    while stack:
        co, is_module = stack.pop()
        stored: set[str] = set()
        loaded: set[str] = set()
        annotations = False
        names = co.co_names
        raw = co.co_code
        extended = 0
        # The raw instruction stream (opcode, argument byte), as `dis` reads it but without
        # building an object per instruction: this loop is most of the check's cost.
        for i in range(0, len(raw), 2):
            op = raw[i]
            arg = raw[i + 1] | extended
            if op == _EXTENDED_ARG:
                extended = arg << 8
                continue
            extended = 0
            kind = _KINDS.get(op)
            if kind is None:
                continue
            if kind == _GLOBAL_READ:
                read.add(names[arg >> _GLOBAL_SHIFT])
            elif kind == _NAME_READ:
                loaded.add(names[arg])
            elif kind == _NAME_STORE:
                stored.add(names[arg])
            elif kind == _GLOBAL_STORE:
                bound.add(names[arg])
            else:
                annotations = True
        if annotations:
            loaded.discard("__annotations__")  # the compiler's own, created by SETUP_ANNOTATIONS
        if is_module:
            bound |= stored
            read |= loaded
        else:
            # A class body: a name it binds is the class's own, whatever order it is read in.
            read |= loaded - stored
        stack.extend((c, False) for c in co.co_consts if isinstance(c, types.CodeType))
    return frozenset(read - bound - _BUILTINS)
