"""What every command payload shares: strict fields and printable text.

The payload schemas validate HTTP bodies (every violation reported) and describe them
in the OpenAPI document; path parameters are part of the payload.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

T = TypeVar("T")

RESOURCE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ResourceId = Annotated[str, StringConstraints(pattern=RESOURCE_ID_PATTERN)]


def pattern_message(pattern: str) -> str | None:
    """What a value failing one of these patterns is told, in words."""
    return PATTERN_MESSAGES.get(pattern)


# C0 and C1 control characters and DEL, as a pattern the published schema can carry.
CONTROLS = "\\u0000-\\u001f\\u007f-\\u009f"
NO_SPACE = rf"^[^\s{CONTROLS}]+$"
SeatLabel = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=NO_SPACE)]


# Text that is not all spaces, and has no control character.
NOT_BLANK = rf"^[^{CONTROLS}]*[^\s{CONTROLS}][^{CONTROLS}]*$"
Text100 = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NOT_BLANK)]
Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NOT_BLANK)]


def whole_number(value: Any) -> Any:
    """An integer as JSON Schema counts one (100 or 100.0); "100", true and 1.5 are
    refused. Use as ``BeforeValidator(whole_number)`` after the field's bounds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number, not text or true/false")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number")
    return int(value)


def distinct(items: list[T]) -> list[T]:
    """Refuse a list that names one item twice."""
    repeated = sorted({str(item) for item in items if items.count(item) > 1})
    if repeated:
        raise ValueError(f"listed more than once: {', '.join(repeated)}")
    return items


PATTERN_MESSAGES = {
    RESOURCE_ID_PATTERN: "must be 1 to 64 letters, digits, '.', '_' or '-', "
    "starting with a letter or a digit",
    NO_SPACE: "must have no spaces and no control characters",
    NOT_BLANK: "must not be blank, nor contain control characters",
}

# RFC 3339: a date, a time and an offset, as text ("Z" or +hh:mm); years 2000 to 9999.
RFC3339 = (
    r"^(2[0-9]{3}|[3-9][0-9]{3})-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _rfc3339_text(value: Any) -> Any:
    if not isinstance(value, str) or not re.fullmatch(RFC3339, value):
        raise ValueError(
            "must be an RFC 3339 date and time with its offset, e.g. 2027-01-01T20:00:00Z"
        )
    return value


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_text),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339}),
]


# With AfterValidator(distinct): a list whose items must differ, and whose schema says so.
UNIQUE_ITEMS: dict[str, Any] = {"uniqueItems": True}


# C0 and C1 control characters and DEL: no text field needs them, and PostgreSQL's jsonb
# refuses NUL, which halted the read model that stored it. (A lone surrogate, which a
# JSON \u escape can also carry, pydantic already refuses as "not a valid string".)
FORBIDDEN_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


class Payload(BaseModel):
    """Base of every command payload: unknown fields are errors, not silently dropped,
    and no text anywhere in it holds a control character."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _printable_text(cls, value: Any) -> Any:
        for text in _texts(value):
            found = FORBIDDEN_CHARACTERS.search(text)
            if found is not None:
                code = f"U+{ord(found.group()):04X}"
                raise ValueError(f"must not contain control characters ({code})")
        return value


def _texts(value: Any) -> Iterator[str]:
    """Every string in ``value``, looking into lists, tuples and dicts."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(key)
            yield from _texts(item)
