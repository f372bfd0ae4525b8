"""Redaction engine: mask values under secret-looking keys in any payload, keeping its type.

Shared by the :class:`~atlas_events.middleware.Redact` middleware (which
rewrites events on the bus) and the dashboard (which masks only what it
shows). Keys are compared as *normalized words*: ``"X-Api-Key"``,
``"AWS_SECRET_ACCESS_KEY"``, ``"apiKey"``, ``"client-secret"`` and
``"Authorization"`` are split on case changes and on every non-alphanumeric
character, lower-cased, and a key matches when a run of its consecutive words
spells one of the configured names (``"api_key"`` and ``"apikey"`` both spell
``apikey``). Whole words only: ``"tokens"`` does not match ``"token"``; but a
name of six or more letters also matches at either end of a run-together word,
as environment variables spell them (``"PGPASSWORD"``, ``"SECRETKEY"``).
``bytes`` keys (decoded as Latin-1) and enum members (by name) are keys too,
and a ``(key, value)`` pair -- a 2-item tuple or list whose first item is a
``str`` or ``bytes`` key, as HTTP headers are often carried
(``[("Authorization", "Bearer ...")]``) -- has its value masked when the key
matches.

Structured payloads are walked by kind -- mappings, lists/tuples/sets,
``NamedTuple``, dataclasses, attrs classes, ``msgspec.Struct`` and pydantic
models (when those libraries are loaded) -- and a changed payload is rebuilt
as the *same* type: a ``NamedTuple`` stays that ``NamedTuple``, a
``defaultdict`` stays a ``defaultdict``. Field values are set without running
the class's ``__init__`` or validators (a mask is a ``str`` where the field
may declare another type).

A ``str`` value that holds a URL with a password
(``postgres://app:hunter2@db/prod``) has the password masked wherever it
sits: connection strings carry their secret in the value.

The walk fails closed: a container nested deeper than 64 levels is replaced
by the mask (it could not be checked), and a reference that closes a cycle
back to a container that held a secret is replaced by the mask (the copy
cannot point back at the unmasked original).
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import re
import sys
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any, Final

import attrs

__all__ = [
    "DEFAULT_REDACTED_KEYS",
    "KeyMatcher",
    "key_text",
    "key_words",
    "mask_url_credentials",
    "pair_key",
    "scrub",
    "structured_fields",
]

DEFAULT_REDACTED_KEYS: Final = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "token",
        "authorization",
        "auth",
        "api_key",
        "access_key",
        "private_key",
        "credential",
        "credentials",
        "cookie",
        "set_cookie",
        "session_id",
        "signature",
    }
)
"""Key names masked by default (matched as normalized words, see the module docstring)."""

_MAX_DEPTH: Final = 64
_MEMO_SIZE: Final = 4096
_AFFIX_MIN: Final = 6  # names this long also match at either end of one word ("PGPASSWORD")
# "apiKey" -> "api Key", "HTTPHeader" -> "HTTP Header", then split on non-alphanumerics.
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS: Final = re.compile(r"[^a-z0-9]+")


def key_words(key: str) -> tuple[str, ...]:
    """Split ``key`` into lower-case words (camelCase, ``-``, ``_``, ``.``, spaces...).

    Args:
        key: A mapping key or field name.

    Returns:
        The words, e.g. ``("x", "api", "key")`` for ``"X-Api-Key"``.
    """
    return tuple(w for w in _SEPARATORS.split(_CAMEL.sub(" ", key).lower()) if w)


class KeyMatcher:
    """Decide whether a key names a secret (memoised; safe from any thread).

    Args:
        keys: Names to match, in any spelling (``"api_key"``, ``"apiKey"``
            and ``"API-KEY"`` are the same name).

    Raises:
        TypeError: ``keys`` is a single ``str`` or holds a non-``str``.
        ValueError: ``keys`` is empty or a name has no letters or digits.
    """

    __slots__ = ("_affixes", "_memo", "names")

    def __init__(self, keys: Iterable[str]) -> None:
        if isinstance(keys, str):
            raise TypeError("keys takes an iterable of key names, not a single str")
        names: set[str] = set()
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"key names must be str, got {type(key).__name__}: {key!r}")
            joined = "".join(key_words(key))
            if not joined:
                raise ValueError(f"key name {key!r} has no letters or digits")
            names.add(joined)
        if not names:
            raise ValueError("Redact needs at least one key")
        self.names: frozenset[str] = frozenset(names)
        self._affixes = tuple(sorted(n for n in names if len(n) >= _AFFIX_MIN))
        self._memo: dict[str, bool] = {}

    def __call__(self, key: str) -> bool:
        """Whether values under ``key`` are secret."""
        hit = self._memo.get(key)
        if hit is None:
            hit = self._match(key)
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = hit
        return hit

    def _match(self, key: str) -> bool:
        words = key_words(key)
        names = self.names
        affixes = self._affixes
        if any(w.startswith(affixes) or w.endswith(affixes) for w in words):
            return True
        for start in range(len(words)):
            run = ""
            for word in words[start:]:
                run += word
                if run in names:
                    return True
        return False


# scheme://user:password@host -- the password part (RFC 3986 userinfo).
_URL_PASSWORD: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):([^/?#@\s]+)@")


def mask_url_credentials(text: str, mask: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URL masked.

    Connection strings (``postgres://app:hunter2@db/prod``,
    ``redis://:hunter2@cache:6379``) carry their secret in the value, under
    keys like ``dsn`` or ``url`` that name no secret.
    """
    if "@" not in text or "://" not in text:  # the common case: no regex
        return text
    return _URL_PASSWORD.sub(lambda m: f"{m[1]}:{mask}@", text)


def key_text(key: object) -> str | None:
    """The text a mapping key is matched by: a ``str`` as is, ``bytes`` decoded as
    Latin-1 (never fails), an enum member's name; ``None`` for other keys."""
    if isinstance(key, str):
        return key
    if isinstance(key, bytes | bytearray):
        return bytes(key).decode("latin-1")
    if isinstance(key, enum.Enum):
        return key.name
    return None


def pair_key(value: object) -> str | None:
    """The key of a ``(key, value)`` pair (a 2-item ``tuple`` or ``list`` whose first
    item is a ``str`` or ``bytes`` and whose second is text), else ``None``."""
    if not (type(value) is tuple or type(value) is list) or len(value) != 2:
        return None
    first: object = value[0]
    second: object = value[1]
    if not isinstance(second, str | bytes | bytearray):
        return None
    return key_text(first) if isinstance(first, str | bytes | bytearray) else None


# ----------------------------------------------------------- structured kinds


def _module(name: str) -> Any:
    """A library only if the program already imported it (never import it here)."""
    return sys.modules.get(name)


def _is_namedtuple(value: object) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def _msgspec_struct(value: object) -> bool:
    msgspec = _module("msgspec")
    return msgspec is not None and isinstance(value, msgspec.Struct)


def _pydantic_model(value: object) -> bool:
    pydantic = _module("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


def structured_fields(value: object) -> list[tuple[str, Any]] | None:
    """The named fields of a record-like payload, or ``None`` for other values.

    Covers ``NamedTuple``, dataclass instances, attrs instances,
    ``msgspec.Struct`` and pydantic models. A field that cannot be read is
    left out.
    """
    cls = type(value)
    if _is_namedtuple(value):
        names: Iterable[str] = cls._fields  # type: ignore[attr-defined]
    elif attrs.has(cls):
        names = (f.name for f in attrs.fields(cls))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = (f.name for f in dataclasses.fields(value))
    elif _msgspec_struct(value):
        names = cls.__struct_fields__  # type: ignore[attr-defined]
    elif _pydantic_model(value):
        names = cls.model_fields  # type: ignore[attr-defined]
    else:
        return None
    out: list[tuple[str, Any]] = []
    for name in names:
        try:
            out.append((name, getattr(value, name)))
        except Exception:  # a broken property must not break redaction
            continue
    return out


def _rebuild_record(value: Any, changes: dict[str, Any]) -> Any:
    """A copy of a record-like payload with ``changes`` applied, of the same class."""
    if _is_namedtuple(value):
        return value._replace(**changes)
    if _pydantic_model(value):
        return value.model_copy(update=changes)
    if _msgspec_struct(value):
        return _module("msgspec").structs.replace(value, **changes)
    new = copy.copy(value)
    for name, item in changes.items():
        object.__setattr__(new, name, item)  # frozen classes too; no validators
    return new


def _rebuild_mapping(value: Mapping[Any, Any], changes: dict[Any, Any]) -> Any:
    if type(value) is dict:
        return {**value, **changes}
    if isinstance(value, MappingProxyType):
        return MappingProxyType({**value, **changes})
    if isinstance(value, MutableMapping):
        new = copy.copy(value)  # keeps defaultdict's factory, OrderedDict's order...
        new.update(changes)
        return new
    try:
        return type(value)({**value, **changes})  # type: ignore[call-arg]
    except Exception:  # an immutable mapping we cannot build: a plain dict
        return {**value, **changes}


def _rebuild_sequence(value: Any, items: list[Any]) -> Any:
    if type(value) in (list, tuple, set, frozenset):
        return type(value)(items)
    if isinstance(value, list):
        new = copy.copy(value)
        new[:] = items
        return new
    try:
        return type(value)(items)
    except Exception:  # a custom container we cannot build: the closest builtin
        return tuple(items) if isinstance(value, tuple) else list(items)


class _Scrubber:
    """One walk over a payload: the matcher, the mask and the cycle guard."""

    __slots__ = ("active", "backrefs", "leaky", "mask", "matches")

    def __init__(self, matches: Callable[[str], bool], mask: Any) -> None:
        self.matches = matches
        self.mask = mask
        self.active: set[int] = set()
        self.backrefs: set[int] = set()  # containers a cycle pointed back to
        self.leaky: set[int] = set()  # ... that held a secret: masked on the second walk

    def scrub(self, value: Any, depth: int) -> tuple[Any, bool]:
        t = type(value)
        if t is str:
            masked = mask_url_credentials(value, self.mask)
            return masked, masked is not value
        if t is int or t is float or t is bool or value is None:
            return value, False
        ident = id(value)
        if ident in self.active:
            if ident in self.leaky:
                return self.mask, True
            self.backrefs.add(ident)
            return value, False
        if depth >= _MAX_DEPTH:
            return (self.mask, True) if _is_container(value) else (value, False)
        self.active.add(ident)
        try:
            new, changed = self._walk(value, depth + 1)
            if changed and ident in self.backrefs:
                # A cycle pointed back at the unmasked original: walk again,
                # masking that reference.
                self.leaky.add(ident)
                new, changed = self._walk(value, depth + 1)
            return new, changed
        finally:
            self.active.discard(ident)

    def _walk(self, value: Any, depth: int) -> tuple[Any, bool]:
        if isinstance(value, Mapping):
            changes = self._changes(value.items(), depth)
            return (_rebuild_mapping(value, changes), True) if changes else (value, False)
        fields = structured_fields(value)
        if fields is not None:
            changes = self._changes(fields, depth)
            return (_rebuild_record(value, changes), True) if changes else (value, False)
        if isinstance(value, list | tuple | set | frozenset):
            pair = pair_key(value)
            if pair is not None and self.matches(pair):
                return _rebuild_sequence(value, [next(iter(value)), self.mask]), True
            items = [self.scrub(v, depth) for v in value]
            if any(changed for _, changed in items):
                return _rebuild_sequence(value, [v for v, _ in items]), True
        return value, False

    def _changes(self, items: Iterable[tuple[Any, Any]], depth: int) -> dict[Any, Any]:
        changes: dict[Any, Any] = {}
        for key, item in items:
            text = key_text(key)
            if text is not None and self.matches(text):
                changes[key] = self.mask
                continue
            new, changed = self.scrub(item, depth)
            if changed:
                changes[key] = new
        return changes


def _is_container(value: object) -> bool:
    return (
        isinstance(value, Mapping | list | tuple | set | frozenset)
        or structured_fields(value) is not None
    )


def scrub(value: Any, matches: Callable[[str], bool], mask: Any) -> tuple[Any, bool]:
    """Mask every value under a matching key, anywhere in ``value``.

    Args:
        value: Any payload; see the module docstring for the kinds walked.
        matches: Says whether a key (mapping key or field name) is secret.
        mask: The replacement value.

    Returns:
        ``(new_value, changed)``; when nothing matched, ``new_value`` is
        ``value`` itself (no copy). Containers on the path to a masked value
        are copied as their own type; others are shared.
    """
    return _Scrubber(matches, mask).scrub(value, 0)
