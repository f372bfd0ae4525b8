"""Whether a handler can only ever return ``None``, judged once from its bytecode.

The publish loop looks at what a sync handler returns, so that an awaitable
(``lambda e: save(e)``) is scheduled and never dropped. For a plain function
whose every ``return`` returns ``None`` that look is wasted: it costs ~55
instructions per handler per publish (a third of a no-op handler's call;
docs/performance.md "Hot path, round 5"). Such handlers get a dispatch entry
whose result the loop ignores; everything else (lambdas, ``partial``,
builtins, callable objects, any function that returns a value somewhere)
keeps the check. When in doubt the answer is ``False``.
"""

from __future__ import annotations

import dis
import inspect
import types
import weakref
from typing import Final

__all__ = ["returns_only_none"]

_NOT_PLAIN: Final = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)

# Code objects already judged (weakly keyed: a dropped function's code goes).
_JUDGED: weakref.WeakKeyDictionary[types.CodeType, bool] = weakref.WeakKeyDictionary()


def returns_only_none(fn: object) -> bool:
    """``True`` if ``fn`` can only return ``None`` (a plain function, every return ``None``).

    Every ``RETURN_VALUE`` must directly follow a ``LOAD_CONST None`` and be
    no jump target (a jump could bring another value to it); on CPython
    3.12+ a ``RETURN_CONST`` must return ``None``. Generator and coroutine
    functions, and anything that is not a ``types.FunctionType``, are
    ``False``. Judged from the function's code at subscribe time (~20 us,
    once per code object).
    """
    if type(fn) is not types.FunctionType:
        return False
    code = fn.__code__
    judged = _JUDGED.get(code)
    if judged is None:
        judged = _JUDGED[code] = _judge(code)
    return judged


def _judge(code: types.CodeType) -> bool:
    if code.co_flags & _NOT_PLAIN:
        return False
    previous: dis.Instruction | None = None
    for ins in dis.get_instructions(code):
        name = ins.opname
        if name == "RETURN_VALUE":
            if (
                ins.is_jump_target
                or previous is None
                or previous.opname != "LOAD_CONST"
                or previous.argval is not None
            ):
                return False
        elif name == "RETURN_CONST":
            if ins.argval is not None:
                return False
        elif name.startswith("RETURN") or name.startswith("YIELD"):
            return False  # an opcode this judge does not know: assume a value
        previous = ins
    return True
