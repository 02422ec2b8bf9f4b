"""What every command payload shares: strict fields and printable text.

The payload schemas validate HTTP bodies (every violation reported) and describe them
in the OpenAPI document; path parameters are part of the payload.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator

RESOURCE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ResourceId = Annotated[str, StringConstraints(pattern=RESOURCE_ID_PATTERN)]
SeatLabel = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^\S+$")]

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
