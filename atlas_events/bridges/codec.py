"""The bridges' wire format: a versioned JSON envelope and a name registry.

Every event a bridge sends is one JSON object (encoded with msgspec, never
``pickle``)::

    {"v": 1,                       # wire version
     "o": "node-a", "i": "9f3c…",  # origin node id, origin bridge incarnation
     "s": 42,                      # sequence number of that incarnation
     "id": "…", "t": "task.completed", "ts": 1732380000.25,
     "d": {"task": "t1"},          # payload (JSON value or registered class)
     "p": "myapp.TaskResult",      # payload class name (absent: plain JSON)
     "src": "planner", "md": {…}, "sc": ["agents"], "pid": "…", "cid": "…"}

Optional keys are left out when empty. Event types and payload classes
travel as *names* that a :class:`Codec` maps both ways, so both sides must
register the same names (:class:`~atlas_events.EventType` is built in).
Untyped payloads round-trip as JSON values: a tuple arrives as a list.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeAlias

import attrs
import msgspec

from .._event import ANY, EMPTY_METADATA, Event, EventType, MemberMap, trusted_event
from ..exceptions import CodecError, PayloadTooLargeError, UnregisteredTypeError

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "WIRE_VERSION",
    "Codec",
    "Decoded",
    "Envelope",
]

WIRE_VERSION: Final = 1
"""The envelope version this codec writes and reads."""

DEFAULT_MAX_PAYLOAD_BYTES: Final = 64 * 1024
"""Default cap on the encoded size of an event's ``data`` plus ``metadata``."""

HEADER_ALLOWANCE: Final = 64 * 1024
"""Entries longer than the cap plus this are refused before being parsed."""

_EMPTY_RAW: Final = msgspec.Raw(b"{}")
_NULL_RAW: Final = msgspec.Raw(b"null")
_PLAIN: Final = (dict, list, tuple, str, int, float, bool)
_PLAIN_TYPES: Final = frozenset(_PLAIN)

# (type name, payload class name or None, payload JSON, metadata JSON or None)
EncodedParts: TypeAlias = tuple[str, str | None, bytes, bytes | None]


class Envelope(msgspec.Struct, omit_defaults=True):
    """The JSON object written to the stream for one event (wire version 1)."""

    v: int
    o: str
    i: str
    s: int
    id: str
    t: str
    ts: float
    d: msgspec.Raw = _NULL_RAW
    p: str | None = None
    src: str | None = None
    md: msgspec.Raw = _EMPTY_RAW
    sc: tuple[str, ...] = ()
    pid: str | None = None
    cid: str | None = None


class _Version(msgspec.Struct):
    v: int


class Decoded(NamedTuple):
    """A decoded wire entry.

    Attributes:
        origin: The node id of the bridge that sent it (also ``event.origin``).
        incarnation: The id of that bridge instance (a restarted node has a
            new one, so its sequence numbers start over without clashing).
        seq: The sequence number of the event within ``(origin, incarnation)``.
        event: The rebuilt event, marked remote (``event.origin == origin``).
    """

    origin: str
    incarnation: str
    seq: int
    event: Event[Any]


def _is_record_class(cls: type[Any]) -> bool:
    """Whether msgspec encodes and decodes ``cls`` field by field."""
    return (
        issubclass(cls, msgspec.Struct)
        or attrs.has(cls)
        or dataclasses.is_dataclass(cls)
        or (issubclass(cls, tuple) and hasattr(cls, "_fields"))
    )


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"{what} must be a non-empty str without surrounding spaces, got {name!r}")
    return name


class Codec:
    """Encodes events to the wire envelope and back; maps types to names.

    Args:
        max_payload_bytes: Cap on the encoded size of ``data`` plus
            ``metadata``. Local events over it are refused at publish time
            (:class:`~atlas_events.exceptions.PayloadTooLargeError`); wire
            entries over it are dead-lettered. Use the same value on every
            node.
        enums: Enum classes to register with :meth:`register_enum`.
        payloads: Payload classes to register with :meth:`register_payload`.

    :class:`~atlas_events.EventType` members are always registered, under
    their string values (``"task.completed"``). Register everything before
    starting a bridge that uses the codec; the registry is read without a
    lock.
    """

    def __init__(
        self,
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        enums: Iterable[type[enum.Enum]] = (),
        payloads: Iterable[type[Any]] = (),
    ) -> None:
        if (
            isinstance(max_payload_bytes, bool)
            or not isinstance(max_payload_bytes, int)
            or max_payload_bytes < 1
        ):
            raise ValueError(f"max_payload_bytes must be an int >= 1, got {max_payload_bytes!r}")
        self.max_payload_bytes = max_payload_bytes
        self._names: MemberMap[str] = MemberMap()  # by identity (IntEnum/StrEnum)
        self._types: dict[str, enum.Enum] = {}
        self._payload_names: dict[type[Any], str] = {}
        self._payload_decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._encoder = msgspec.json.Encoder()
        self._encode = self._encoder.encode
        self._env_decoder = msgspec.json.Decoder(Envelope)
        self._version_decoder = msgspec.json.Decoder(_Version)
        self._md_decoder = msgspec.json.Decoder(dict[str, Any])
        self._any_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
        for member in EventType:
            self.register_type(member, member.value)
        for cls in enums:
            self.register_enum(cls)
        for pcls in payloads:
            self.register_payload(pcls)

    # ------------------------------------------------------------- registry

    def register_type(self, member: enum.Enum, name: str) -> None:
        """Send ``member`` as ``name`` and read ``name`` back as ``member``.

        Raises:
            TypeError: ``member`` is not an enum member.
            ValueError: ``name`` is empty, or one of the two is already
                registered with another partner.
        """
        if not isinstance(member, enum.Enum) or member is ANY:
            raise TypeError(f"event type must be an Enum member, got {member!r}")
        _check_name(name, "event type name")
        old_name = self._names.get(member)
        old_member = self._types.get(name)
        if old_name == name and old_member is member:
            return
        if old_name is not None:
            raise ValueError(f"{member!r} is already registered as {old_name!r}")
        if old_member is not None:
            raise ValueError(f"name {name!r} is already registered for {old_member!r}")
        self._names[member] = name
        self._types[name] = member

    def register_enum(self, enum_cls: type[enum.Enum], *, prefix: str | None = None) -> None:
        """Register every member of ``enum_cls`` as ``"<prefix>.<MEMBER>"``.

        Args:
            enum_cls: The enum class.
            prefix: Defaults to the class's ``__name__``; pass something more
                specific (``"billing.Events"``) if two of your enums share a name.
        """
        if not (isinstance(enum_cls, type) and issubclass(enum_cls, enum.Enum)):
            raise TypeError(f"register_enum() takes an Enum class, got {enum_cls!r}")
        head = _check_name(enum_cls.__name__ if prefix is None else prefix, "prefix")
        for member in enum_cls:
            self.register_type(member, f"{head}.{member.name}")

    def register_payload(self, cls: type[Any], name: str | None = None) -> None:
        """Send instances of ``cls`` tagged ``name``; rebuild them on receipt.

        ``cls`` must be something msgspec can encode and decode: an
        ``attrs`` class, a dataclass, a ``msgspec.Struct``, a ``NamedTuple``.

        Args:
            cls: The payload class.
            name: Its wire name; defaults to ``"<module>.<qualname>"`` (required
                for classes defined in ``__main__``).

        Raises:
            TypeError: msgspec cannot decode into ``cls``.
            ValueError: ``cls`` is a plain JSON type, a name clashes, or a
                ``__main__`` class has no explicit name.
        """
        if not isinstance(cls, type):
            raise TypeError(f"register_payload() takes a class, got {cls!r}")
        if cls in _PLAIN or cls is type(None):
            raise ValueError(f"{cls.__qualname__} payloads are plain JSON; do not register them")
        if name is None and cls.__module__ == "__main__":
            raise ValueError(
                f"{cls.__qualname__} is defined in __main__, whose name differs between "
                "processes: give it an explicit wire name"
            )
        wire = _check_name(name or f"{cls.__module__}.{cls.__qualname__}", "payload name")
        old = self._payload_names.get(cls)
        if old == wire:
            return
        if old is not None:
            raise ValueError(f"{cls.__qualname__} is already registered as {old!r}")
        if wire in self._payload_decoders:
            raise ValueError(f"payload name {wire!r} is already registered")
        if not _is_record_class(cls):
            raise TypeError(
                f"msgspec cannot decode {cls.__qualname__}: register an attrs class, a "
                "dataclass, a msgspec.Struct or a NamedTuple"
            )
        decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(cls)
        self._payload_names[cls] = wire
        self._payload_decoders[wire] = decoder

    def knows(self, member: enum.Enum) -> bool:
        """Whether ``member`` has a wire name."""
        return member in self._names

    def type_name(self, member: enum.Enum) -> str:
        """The wire name of ``member``.

        Raises:
            UnregisteredTypeError: It has none.
        """
        name = self._names.get(member)
        if name is None:
            raise UnregisteredTypeError(member, "event type")
        return name

    def event_type(self, name: str) -> enum.Enum:
        """The event type registered as ``name``.

        Raises:
            UnregisteredTypeError: No type has that name.
        """
        member = self._types.get(name)
        if member is None:
            raise UnregisteredTypeError(name, "event type")
        return member

    # ------------------------------------------------------------- encoding

    def encode_parts(self, event: Event[Any], type_name: str | None = None) -> EncodedParts:
        """Encode the parts of ``event`` that its publisher owns, and check the cap.

        Args:
            event: The event.
            type_name: Its wire type name, if the caller already looked it up.

        Returns:
            ``(type name, payload class name or None, payload JSON, metadata
            JSON or None)``; :meth:`encode` completes the envelope.

        Raises:
            UnregisteredTypeError: The event type or payload class has no name.
            PayloadTooLargeError: ``data`` plus ``metadata`` exceed the cap.
            CodecError: The payload or metadata is not JSON-encodable.
        """
        if type_name is None:
            type_name = self._names.get(event.type)
            if type_name is None:
                raise UnregisteredTypeError(event.type, "event type", event_id=event.id)
        data = event.data
        md = event.metadata
        payload_name: str | None = None
        encode = self._encode
        try:
            if data is None:
                d = b"null"
            else:
                cls = type(data)
                if cls not in _PLAIN_TYPES:
                    payload_name = self._payload_names.get(cls)
                    if payload_name is None and not isinstance(data, _PLAIN):
                        raise UnregisteredTypeError(cls, "payload class", event_id=event.id)
                d = encode(data)
            if md:
                encoded_md = encode(dict(md))
                md_bytes: bytes | None = encoded_md
                size = len(d) + len(encoded_md)
            else:
                md_bytes = None
                size = len(d)
        except (TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, CodecError):
                raise
            raise CodecError(
                "unencodable",
                f"event {event.id} ({event.type!r}) cannot be encoded as JSON: {exc}",
                event_id=event.id,
            ) from exc
        if size > self.max_payload_bytes:
            raise PayloadTooLargeError(
                size, self.max_payload_bytes, event_id=event.id, event_type=event.type
            )
        return type_name, payload_name, d, md_bytes

    def encode(
        self,
        event: Event[Any],
        *,
        origin: str,
        incarnation: str,
        seq: int,
        parts: EncodedParts | None = None,
    ) -> bytes:
        """Encode ``event`` as a wire envelope.

        Args:
            event: The event.
            origin: The sending node's id.
            incarnation: The sending bridge instance's id.
            seq: The event's sequence number within ``(origin, incarnation)``.
            parts: What :meth:`encode_parts` returned for ``event``, if known.

        Raises:
            UnregisteredTypeError, PayloadTooLargeError, CodecError: as
                :meth:`encode_parts`.
        """
        type_name, payload_name, d, md = self.encode_parts(event) if parts is None else parts
        return self._encoder.encode(
            Envelope(
                WIRE_VERSION,
                origin,
                incarnation,
                seq,
                event.id,
                type_name,
                event.timestamp,
                msgspec.Raw(d),
                payload_name,
                event.source,
                _EMPTY_RAW if md is None else msgspec.Raw(md),
                event.scope,
                event.parent_id,
                event.correlation_id,
            )
        )

    def origin_prefix(self, origin: str) -> bytes:
        """The bytes every envelope this codec encodes for ``origin`` starts with.

        Lets a node recognise (and skip) its own entries without decoding them.
        """
        return b'{"v":%d,"o":%s,' % (WIRE_VERSION, self._encoder.encode(origin))

    # ------------------------------------------------------------- decoding

    def decode(self, raw: bytes) -> Decoded:
        """Rebuild the event a wire entry carries, marked remote.

        Raises:
            CodecError: With ``reason`` ``"oversized"``
                (:class:`~atlas_events.exceptions.PayloadTooLargeError`),
                ``"malformed"``, ``"version"``, ``"unknown-type"`` or
                ``"unknown-payload"``
                (:class:`~atlas_events.exceptions.UnregisteredTypeError`),
                ``"bad-payload"`` or ``"undecodable"`` (any other exception
                while decoding or building the payload, as ``__cause__``).
        """
        return Decoded(*self._decode(raw))

    def _decode(self, raw: bytes) -> tuple[str, str, int, Event[Any]]:
        """:meth:`decode` without the named tuple (the bridge's hot path).

        Any failure is a :class:`CodecError`: also one that is not msgspec's
        (``RecursionError`` from deeply nested JSON, a payload class whose
        constructor or ``__post_init__`` raises), with reason ``"undecodable"``.
        """
        try:
            return self._decode_entry(raw)
        except CodecError:
            raise
        except Exception as exc:
            raise CodecError(
                "undecodable", f"entry does not decode: {type(exc).__name__}: {exc}"
            ) from exc

    def _decode_entry(self, raw: bytes) -> tuple[str, str, int, Event[Any]]:
        limit = self.max_payload_bytes
        if len(raw) > limit + HEADER_ALLOWANCE:
            raise PayloadTooLargeError(len(raw), limit)
        try:
            env = self._env_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise self._malformed(raw, exc) from exc
        if env.v != WIRE_VERSION:
            raise CodecError(
                "version", f"entry {env.id} has wire version {env.v}, expected {WIRE_VERSION}"
            )
        if not env.o or not env.id:
            raise CodecError("malformed", "entry has an empty origin or event id")
        md_raw = env.md
        size = len(env.d) + (0 if md_raw is _EMPTY_RAW else len(md_raw))
        if size > limit:
            raise PayloadTooLargeError(size, limit, event_id=env.id, event_type=env.t)
        event_type = self._types.get(env.t)
        if event_type is None:
            raise UnregisteredTypeError(env.t, "event type", event_id=env.id)
        try:
            if env.p is None:
                data = self._any_decoder.decode(env.d)
            else:
                decoder = self._payload_decoders.get(env.p)
                if decoder is None:
                    raise UnregisteredTypeError(env.p, "payload class", event_id=env.id)
                data = decoder.decode(env.d)
            metadata: Mapping[str, Any] = (
                EMPTY_METADATA
                if md_raw is _EMPTY_RAW
                else MappingProxyType(self._md_decoder.decode(md_raw))
            )
        except msgspec.DecodeError as exc:
            raise CodecError(
                "bad-payload", f"entry {env.id}: payload does not decode: {exc}", event_id=env.id
            ) from exc
        # Every field is validated above (msgspec checked the types, the
        # registry the event type), so skip Event's checking __init__: build
        # the slots and swap the class, as the bus does.
        event = trusted_event(
            env.id,
            event_type,
            data,
            env.ts,
            env.src,
            metadata,
            env.sc,
            env.pid,
            -1,
            env.cid,
            env.o,
        )
        return env.o, env.i, env.s, event

    def _malformed(self, raw: bytes, exc: Exception) -> CodecError:
        try:
            version = self._version_decoder.decode(raw).v
        except msgspec.DecodeError:
            version = WIRE_VERSION
        if version != WIRE_VERSION:
            return CodecError("version", f"entry has wire version {version}, expected 1")
        return CodecError("malformed", f"entry is not a valid envelope: {exc}")

    def __repr__(self) -> str:
        return (
            f"<Codec types={len(self._names)} payloads={len(self._payload_names)} "
            f"max_payload_bytes={self.max_payload_bytes}>"
        )
