"""How the online store lays out keys and values in Redis: the format, in one place.

Every key is readable in ``redis-cli``::

    fs:<project>:<target>:{user_id=42}:user_order_features
    fs:<project>:<target>:{merchant_id=7,user_id=42}:pair_features      (composite entity)

The braces are a Redis Cluster hash tag: all views of one entity share a slot, so
one entity's reads stay on one shard. Join keys appear sorted by name, so views that
list a composite entity's keys in different orders still share the tag. Entity values are percent-escaped for the
characters that would make a key ambiguous (``% { } , =``), so a string key such as
``a}b`` becomes ``{name=a%7Db}``.

Each key holds a hash:

=================  ================================================================
field              value (text)
=================  ================================================================
``<feature>``      the value, formatted by its declared type (table below)
``__event_ts``     the row's event timestamp, integer microseconds since the epoch (UTC)
``__created_ts``   the row's created timestamp, same unit; absent when NULL / undeclared
``__definition``   16 hex digits identifying the view's definition the row was written under
                   (keys, times, ttl, feature names and types): a changed definition rewrites it
=================  ================================================================

A NULL feature value is an *absent field* in a key that exists (``__event_ts`` is
always there), so a stored NULL and a missing entity are told apart.

==========  ============================================  ========================
kind        stored as                                     read back as
==========  ============================================  ========================
int         decimal digits ``-42``                        ``int``
float       shortest round-trip text ``0.1``, ``1e+300``, ``float`` (bit-exact)
            ``-0``, ``nan``, ``inf``
decimal     digits with the column's scale ``27.40``      ``decimal.Decimal``
string      the UTF-8 text as is                          ``str``
bool        ``true`` / ``false``                          ``bool``
timestamp   ``2025-11-03 00:07:54.000000`` (``Z`` suffix  ``datetime`` (aware UTC
            when the column is timezone-aware)            only when stored with Z)
date        ``2025-11-03``                                ``datetime.date``
==========  ============================================  ========================

Two encoders produce this format: :func:`encode_value` for one Python value and
:func:`encode_column` for an Arrow column (vectorised, used by the sync); both are
checked against :func:`decoder` by property tests. pyarrow is imported only by the
Arrow functions, so the serving path does not pay for it.
"""

from __future__ import annotations

import numbers
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, overload

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = [
    "CREATED_TS",
    "DEFINITION",
    "EVENT_TS",
    "INT_KEY_PATTERN",
    "decoder",
    "encode_column",
    "encode_value",
    "entity_tag",
    "entity_tag_column",
    "tagger",
    "escape",
    "micros",
    "naive_utc",
    "view_key",
]

EVENT_TS = "__event_ts"
CREATED_TS = "__created_ts"
DEFINITION = "__definition"
RESERVED_FIELDS = (EVENT_TS, CREATED_TS, DEFINITION)

# Order matters: "%" first, so the escapes we add are not escaped again.
_ESCAPES = (("%", "%25"), ("{", "%7B"), ("}", "%7D"), (",", "%2C"), ("=", "%3D"))


def escape(text: str) -> str:
    """Percent-escape the characters that would make an entity tag ambiguous."""
    if any(c in text for c in "%{},="):
        for raw, esc in _ESCAPES:
            text = text.replace(raw, esc)
    return text


# -- keys -----------------------------------------------------------------------------------

# The one spelling of an integer key as text: ASCII digits, '-' for negatives, no '+', no
# leading zeros, nothing else. int() would also take " 42", "4_2", "٤٢" and "042" and so
# turn a typo into another entity's features.
INT_KEY_PATTERN = r"0|-?[1-9][0-9]*"
_INT_KEY = re.compile(INT_KEY_PATTERN)
_DECIMAL_KEY = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _key_text(kind: str | None, value: Any, key: str) -> str:
    """One join-key value as it appears inside the hash tag (rules: :func:`entity_tag`)."""
    if value is None:
        raise ValueError(f"join key {key!r} is None; NULL keys never match a feature row")
    if kind == "int":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return str(int(value))
        if isinstance(value, str) and _INT_KEY.fullmatch(value):
            return value
        raise ValueError(_key_problem(key, value, kind, "an int, or its plain decimal text such as '42' "
                                                        "(ASCII digits, no spaces, '_', '+' or leading zeros)"))
    if kind == "string" or kind is None:
        if kind == "string" and not isinstance(value, str):
            raise ValueError(_key_problem(key, value, kind, "a str (convert numbers yourself, e.g. str(42))"))
        return escape(str(value))
    if kind == "timestamp":
        if isinstance(value, str):
            value = _iso(datetime.fromisoformat, key, value, kind, "ISO 8601 text such as '2025-11-03T00:07:54Z'")
        elif not isinstance(value, datetime):
            raise ValueError(_key_problem(key, value, kind, "a datetime or ISO 8601 text"))
        value = naive_utc(value)  # keys are naive UTC: aware or not, one key
    elif kind == "date":
        if isinstance(value, str):
            value = _iso(date.fromisoformat, key, value, kind, "ISO 8601 text such as '2025-11-03'")
        elif isinstance(value, datetime) or not isinstance(value, date):
            raise ValueError(_key_problem(key, value, kind, "a datetime.date (not a datetime) or ISO 8601 text"))
    elif kind == "bool":
        if isinstance(value, str) and value in ("true", "false"):
            return value
        if not isinstance(value, bool):
            raise ValueError(_key_problem(key, value, kind, "True/False or the text 'true'/'false'"))
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(_key_problem(key, value, kind, "a Python float or int"))
    elif kind == "decimal":
        if isinstance(value, str) and _DECIMAL_KEY.fullmatch(value):
            value = Decimal(value)
        elif isinstance(value, bool) or not isinstance(value, (Decimal, numbers.Integral)):
            raise ValueError(_key_problem(key, value, kind, "a Decimal, an int or decimal text such as '27.40'"))
    text = encode_value(kind, value)
    assert text is not None  # value is not None here: NULL keys are refused above
    return escape(text)


def _key_problem(key: str, value: Any, kind: str, expected: str) -> str:
    return f"join key {key!r} is declared {kind} and got {value!r} ({type(value).__name__}); give {expected}"


def _iso(parse: Callable[[str], Any], key: str, value: str, kind: str, expected: str) -> Any:
    try:
        return parse(value)
    except ValueError:
        raise ValueError(_key_problem(key, value, kind, expected)) from None


def entity_tag(join_keys: Iterable[str], kinds: Mapping[str, str | None], entity: Mapping[str, Any]) -> str:
    """``{k1=v1,k2=v2}`` for one entity (``entity`` must hold every join key), keys sorted by name.

    Each value is taken as its key's declared kind, strictly, so that a value which is not
    plainly that key never becomes another entity's key (ValueError naming the key, the
    value and what to give instead):

    =========  ==================================================================
    kind       accepted
    =========  ==================================================================
    int        ``int`` and numpy integers (not ``bool``); ``str`` only in canonical
               decimal form ``0|-?[1-9][0-9]*``: ``"42"`` yes; ``" 42"``, ``"4_2"``,
               ``"+42"``, ``"042"``, ``"٤٢"`` no. Never ``float`` (``42.0``) or ``bytes``.
    string     ``str`` only (``42`` is refused, not turned into ``"42"``)
    timestamp  ``datetime`` (aware ones are converted to UTC) or ISO 8601 text
    date       ``date`` (not ``datetime``) or ISO 8601 text
    bool       ``bool`` or the text ``true`` / ``false``
    float      ``float`` or ``int`` (not ``bool``)
    decimal    ``Decimal``, ``int`` or text ``-?[0-9]+(.[0-9]+)?``
    (none)     a type we cannot classify: ``str(value)``
    =========  ==================================================================

    ``None`` raises too: a NULL key never matches, so the caller decides what it reads.
    """
    return "{" + ",".join(f"{k}={_key_text(kinds.get(k), entity[k], k)}" for k in sorted(join_keys)) + "}"


def tagger(join_keys: Iterable[str], kinds: Mapping[str, str | None]) -> Callable[[Mapping[str, Any]], str]:
    """:func:`entity_tag` specialised for one set of join keys (the read path's hot loop); same rules."""
    keys = tuple(join_keys)
    if len(keys) == 1 and kinds.get(keys[0]) == "int":
        key = keys[0]
        head = "{" + key + "="

        def tag(entity: Mapping[str, Any]) -> str:
            value = entity[key]
            if type(value) is int:
                return head + str(value) + "}"
            return head + _key_text("int", value, key) + "}"

        return tag
    return lambda entity: entity_tag(keys, kinds, entity)


def view_key(prefix: str, view: str, tag: str) -> str:
    """The Redis key of one entity's row of one view."""
    return f"{prefix}:{tag}:{view}"


def entity_tag_column(join_keys: Iterable[str], kinds: Mapping[str, str | None], columns: Mapping[str, "pa.Array"]):
    """:func:`entity_tag` for whole Arrow columns at once (no NULLs allowed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts: list[Any] = []
    for i, k in enumerate(sorted(join_keys)):
        kind = kinds.get(k)
        col = columns[k]
        if kind == "timestamp" and pa.types.is_timestamp(col.type) and col.type.tz is not None:
            col = pc.cast(micros_column(col), pa.timestamp("us"))  # naive UTC, as _key_text
        text = encode_column(kind, col) if kind not in ("int", "string", None) else pc.cast(col, "string")
        if kind != "int":
            for raw, esc in _ESCAPES:
                text = pc.replace_substring(text, raw, esc)
        parts += [("{" if i == 0 else ",") + f"{k}=", text]
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")


# -- values ---------------------------------------------------------------------------------


def encode_value(kind: str | None, value: Any) -> str | None:
    """One Python value as stored text (``None`` stays ``None``: the field is left out)."""
    if value is None:
        return None
    if kind == "int":
        return str(int(value))
    if kind == "float":
        return repr(float(value))  # shortest text that parses back to the same double (nan, inf, -0.0 too)
    if kind == "decimal":
        return str(value if isinstance(value, Decimal) else Decimal(str(value)))
    if kind == "bool":
        return "true" if value else "false"
    if kind == "timestamp":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is not None:
            return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds") + "Z"
        return value.isoformat(sep=" ", timespec="microseconds")
    if kind == "date":
        if isinstance(value, datetime):
            value = value.date()
        return value.isoformat() if not isinstance(value, str) else date.fromisoformat(value).isoformat()
    return str(value)


def _decode_text(raw: bytes) -> str:
    return raw.decode()


def _decode_bool(raw: bytes) -> bool:
    return raw == b"true"


def _decode_decimal(raw: bytes) -> Decimal:
    return Decimal(raw.decode())


def _decode_timestamp(raw: bytes) -> datetime:
    return datetime.fromisoformat(raw.decode())


def _decode_date(raw: bytes) -> date:
    return date.fromisoformat(raw.decode())


_DECODERS: dict[str | None, Callable[[bytes], Any]] = {
    "int": int,
    "float": float,
    "decimal": _decode_decimal,
    "string": _decode_text,
    "bool": _decode_bool,
    "timestamp": _decode_timestamp,
    "date": _decode_date,
    None: _decode_text,
}


def decoder(kind: str | None) -> Callable[[bytes], Any]:
    """The function turning stored bytes of ``kind`` back into the Python value."""
    return _DECODERS.get(kind, _decode_text)


@overload
def naive_utc(value: datetime | str) -> datetime: ...


@overload
def naive_utc(value: None) -> None: ...


def naive_utc(value: datetime | str | None) -> datetime | None:
    """``value`` (a datetime or ISO text) as a naive UTC datetime; naive means UTC already."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def micros(value: datetime) -> int:
    """A datetime as integer microseconds since the epoch; naive means UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    """Inverse of :func:`micros`, as a naive UTC datetime (how the warehouse returns timestamps)."""
    return datetime(1970, 1, 1) + timedelta(microseconds=value)


# -- Arrow (vectorised, for the sync) -------------------------------------------------------


def encode_column(kind: str | None, column: "pa.Array") -> "pa.Array":
    """A whole Arrow column as stored text; NULLs stay NULL. Matches :func:`encode_value`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    typ = column.type
    if kind == "date" and pa.types.is_timestamp(typ):
        # Checked first: a date feature the warehouse returns as a timestamp is stored as a date.
        column = pc.cast(column, pa.date32())
    elif kind == "timestamp" or pa.types.is_timestamp(typ):
        if pa.types.is_date(typ):
            column = pc.cast(column, pa.timestamp("us"))
        elif typ.tz is not None:
            column = pc.cast(column, pa.timestamp("us", "UTC"), safe=False)
        elif typ.unit != "us":
            column = pc.cast(column, pa.timestamp("us"), safe=False)
    elif kind == "int" and (pa.types.is_floating(typ) or pa.types.is_decimal(typ)):
        column = pc.cast(column, pa.int64())
    elif kind == "float" and typ != pa.float64():
        # float32 too: its shortest text ("0.1") would read back as a different double
        # than the warehouse returns for it (0.10000000149011612).
        column = pc.cast(column, pa.float64())
    elif kind == "bool" and not pa.types.is_boolean(typ):
        column = pc.cast(column, pa.bool_())
    if pa.types.is_string(column.type):
        return column
    if pa.types.is_large_string(column.type):
        return pc.cast(column, pa.string())
    return pc.cast(column, pa.string())


def micros_column(column: "pa.Array") -> "pa.Array":
    """A timestamp (or date) column as int64 microseconds since the epoch, UTC."""
    import pyarrow as pa
    import pyarrow.compute as pc

    typ = column.type
    if pa.types.is_date(typ):
        column = pc.cast(column, pa.timestamp("us"))
    elif pa.types.is_timestamp(typ) and (typ.unit != "us"):
        column = pc.cast(column, pa.timestamp("us", typ.tz), safe=False)
    elif not pa.types.is_timestamp(typ):
        raise TypeError(f"expected a timestamp column, got {typ}")
    return pc.cast(column, pa.int64())
