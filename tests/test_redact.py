"""The redaction engine (``atlas_events._redact``) and the ``Redact`` middleware built on it."""

from __future__ import annotations

import collections
import dataclasses
import enum
from types import MappingProxyType
from typing import Any, NamedTuple

import attrs
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas_events import EventBus, EventType, declare
from atlas_events._redact import DEFAULT_REDACTED_KEYS, KeyMatcher, key_words, scrub
from atlas_events.middleware import Redact


class Request(NamedTuple):
    url: str
    headers: dict[str, str]


class Creds(NamedTuple):
    user: str
    password: str


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenDC:
    name: str
    client_secret: str
    derived: int = dataclasses.field(init=False, default=0)


@attrs.frozen
class Validated:
    user: str
    pin_code: int = attrs.field(validator=attrs.validators.instance_of(int))
    _private_token: str = "t"


class Login(msgspec.Struct, frozen=True):
    user: str
    apiKey: str


@pytest.fixture
def matcher() -> KeyMatcher:
    """The default key matcher."""
    return KeyMatcher(DEFAULT_REDACTED_KEYS)


def test_key_words_split_every_spelling() -> None:
    """camelCase, kebab, snake, dotted and ALL_CAPS keys split into the same lower words."""
    assert key_words("X-Api-Key") == ("x", "api", "key")
    assert key_words("apiKey") == ("api", "key")
    assert key_words("AWS_SECRET_ACCESS_KEY") == ("aws", "secret", "access", "key")
    assert key_words("HTTPAuthorization") == ("http", "authorization")
    assert key_words("db.password") == ("db", "password")
    assert key_words("--") == ()


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "X-Api-Key",
        "x_api_key",
        "apiKey",
        "APIKEY",
        "api-key",
        "Authorization",
        "Proxy-Authorization",
        "AWS_SECRET_ACCESS_KEY",
        "aws_access_key_id",
        "client-secret",
        "clientSecret",
        "GITHUB_TOKEN",
        "x-auth-token",
        "refreshToken",
        "Set-Cookie",
        "cookie",
        "private_key",
        "privateKey",
        "DB_PASSWD",
        "session_id",
        "sessionId",
        "credentials",
        "passphrase",
        "PGPASSWORD",
        "MYSQL_PWD",
        "SECRETKEY",
        "dbpassword",
    ],
)
def test_secret_spellings_match(matcher: KeyMatcher, key: str) -> None:
    """HTTP headers, environment variables and config keys all match."""
    assert matcher(key)


@pytest.mark.parametrize(
    "key", ["tokens", "max_tokens", "user", "author", "keyboard", "passage", "session", "url"]
)
def test_ordinary_keys_do_not_match(matcher: KeyMatcher, key: str) -> None:
    """Whole words only: ``tokens`` is not ``token``, ``author`` is not ``auth``."""
    assert not matcher(key)


def test_matcher_rejects_bad_keys() -> None:
    """Empty key lists, a single str, non-str keys and punctuation-only names are refused."""
    with pytest.raises(ValueError, match="at least one key"):
        KeyMatcher([])
    with pytest.raises(TypeError, match="single str"):
        KeyMatcher("password")
    with pytest.raises(TypeError, match="str"):
        KeyMatcher([3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="no letters"):
        KeyMatcher(["--"])


def test_every_structured_kind_keeps_its_type(matcher: KeyMatcher) -> None:
    """Mappings, sequences, NamedTuple, dataclasses, attrs and msgspec keep their class."""
    payloads: list[Any] = [
        Creds("alice", "hunter2"),
        Request("https://x", {"Authorization": "Bearer hunter2"}),
        FrozenDC("n", "hunter2"),
        Validated("u", 1234, "hunter2"),
        Login(user="bob", apiKey="hunter2"),
        collections.OrderedDict(password="hunter2", a=1),
        collections.defaultdict(list, {"token": "hunter2"}),
        MappingProxyType({"secret": "hunter2"}),
        [{"password": "hunter2"}],
        ({"password": "hunter2"},),
        frozenset({Creds("a", "hunter2")}),
    ]
    for payload in payloads:
        out, changed = scrub(payload, matcher, "***")
        assert changed, payload
        assert type(out) is type(payload), payload
        assert "hunter2" not in repr(out), out
        assert "hunter2" in repr(payload)  # the original is untouched
    dd, _ = scrub(collections.defaultdict(list, {"token": "x"}), matcher, "***")
    assert dd["missing"] == []  # the factory survived


def test_clean_payload_is_returned_as_is(matcher: KeyMatcher) -> None:
    """Nothing to mask: the very same object comes back, no copy."""
    payload = {"a": [1, {"b": "c"}]}
    out, changed = scrub(payload, matcher, "***")
    assert out is payload
    assert not changed


def test_cycles_do_not_recurse_forever(matcher: KeyMatcher) -> None:
    """A self-referencing payload is walked once."""
    loop: dict[str, Any] = {"password": "p"}
    loop["self"] = loop
    out, changed = scrub(loop, matcher, "***")
    assert changed
    assert out["password"] == "***"
    assert out["self"] == "***"  # not the unmasked original
    assert "'p'" not in repr(out)
    clean: list[Any] = [1]
    clean.append(clean)
    assert scrub(clean, matcher, "***") == (clean, False)  # a clean cycle is left alone


def test_header_pairs_bytes_and_enum_keys(matcher: KeyMatcher) -> None:
    """``[("Authorization", "Bearer x")]`` pairs, ``bytes`` keys and enum keys are masked."""

    class Header(enum.Enum):
        API_KEY = 1

    headers = [("Authorization", "Bearer hunter2"), ("Accept", "text/html")]
    out, changed = scrub(headers, matcher, "***")
    assert changed
    assert out == [("Authorization", "***"), ("Accept", "text/html")]
    assert type(out[0]) is tuple
    raw = [[b"x-api-key", b"hunter2"], [b"host", b"example"]]  # ASGI-style, as lists
    out, _ = scrub(raw, matcher, "***")
    assert out == [[b"x-api-key", "***"], [b"host", b"example"]]
    out, _ = scrub({b"password": "hunter2", Header.API_KEY: "hunter2"}, matcher, "***")
    assert out == {b"password": "***", Header.API_KEY: "***"}
    assert scrub(("token", 3), matcher, "***") == (("token", 3), False)  # not text: not a pair
    assert scrub(["tokens", "x"], matcher, "***") == (["tokens", "x"], False)


def test_too_deep_payload_fails_closed(matcher: KeyMatcher) -> None:
    """A secret nested past the walk's depth limit is masked with its subtree, not shown."""
    deep: Any = {"password": "hunter2"}
    for _ in range(100):
        deep = {"a": deep}
    out, changed = scrub(deep, matcher, "***")
    assert changed
    assert "hunter2" not in repr(out)
    shallow: Any = "leaf"
    for _ in range(100):
        shallow = [shallow]
    assert scrub(shallow, matcher, "***")[1] is True  # cannot be checked: masked


def test_pydantic_models_when_installed(matcher: KeyMatcher) -> None:
    """pydantic models are rebuilt with ``model_copy`` (same class)."""
    pydantic = pytest.importorskip("pydantic")

    class Settings(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        user: str
        api_key: str

    out, changed = scrub(Settings(user="u", api_key="hunter2"), matcher, "***")
    assert changed
    assert type(out) is Settings
    assert out.api_key == "***"


def test_redact_middleware_keeps_the_declared_payload_class() -> None:
    """A typed handler still gets its NamedTuple after Redact masked a field inside it."""
    bus = EventBus()
    bus.add_middleware(Redact())
    key = declare(EventType.TASK_STARTED, Request)
    bus.declare(key)
    seen: list[Request] = []
    bus.subscribe(key, lambda e: seen.append(e.data))
    bus.publish(key, Request("https://x", {"authorization": "Bearer s3cret"}))
    assert type(seen[0]) is Request
    assert seen[0].headers == {"authorization": "***"}
    bus.publish(EventType.TASK_COMPLETED, Login(user="bob", apiKey="k"))
    assert bus.history()[-1].data == Login(user="bob", apiKey="***")


def test_redact_matches_normalized_words() -> None:
    """``Redact(keys)`` accepts names in any spelling and matches keys in any spelling."""
    redact = Redact(["pin-code"])
    assert redact.matches("PIN_CODE")
    assert redact.matches("pinCode")
    assert not redact.matches("pin")
    out, changed = redact.scrub(Validated("u", 1234))
    assert changed
    assert type(out) is Validated
    pin_code: object = out.pin_code
    assert pin_code == "***"  # set without running the int validator


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
keys = st.sampled_from(["password", "apiKey", "user", "X-Api-Key", "n", "tokens", "AWS_SECRET"])


@given(
    st.recursive(
        json_leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(keys, inner, max_size=4),
            st.tuples(inner, inner),
        ),
        max_leaves=30,
    )
)
def test_scrub_fuzz_no_secret_survives(payload: Any) -> None:
    """Any nested payload: every value under a secret key is masked, types kept, nothing raises."""
    matcher = KeyMatcher(DEFAULT_REDACTED_KEYS)
    out, changed = scrub(payload, matcher, "***")
    assert type(out) is type(payload)

    def check(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if matcher(k):
                    assert v == "***"
                else:
                    check(v)
        elif isinstance(value, list | tuple):
            for v in value:
                check(v)

    check(out)
    if not changed:
        assert out is payload


def test_url_passwords_are_masked_in_values(matcher: KeyMatcher) -> None:
    """A connection string's password is masked under any key; URLs without one are kept."""
    payload = {
        "dsn": "postgres://app:hunter2@db.internal:5432/prod",
        "cache": ["redis://:hunter2@cache:6379/0"],
        "note": "see https://example.org/a@b and mail ana@example.org",
    }
    out, changed = scrub(payload, matcher, "***")
    assert changed
    assert out["dsn"] == "postgres://app:***@db.internal:5432/prod"
    assert out["cache"] == ["redis://:***@cache:6379/0"]
    assert out["note"] == payload["note"]
    plain = {"url": "https://example.org/x"}
    assert scrub(plain, matcher, "***") == (plain, False)
