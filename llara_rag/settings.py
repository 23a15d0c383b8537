"""Settings a user types, refused in one line that names the flag, the value and the way out.

Pydantic's ``ValidationError`` spans several lines and names fields, not the flags a user typed. A
config built on :class:`UserSettings` raises :class:`~llara_rag.errors.InvalidInputError` instead, with
the flag each field declares (``Field(json_schema_extra={"flag": "-k"})``), so ``llara-rag`` and the
library refuse a value with the same message, before any model loads.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llara_rag.errors import InvalidInputError

Settings = TypeVar("Settings", bound=BaseModel)


def checked(model: type[Settings], /, **values: Any) -> Settings:
    """``model(**values)`` for a model that is not a :class:`UserSettings`, refused as one would be, the
    fields named as flags (``--max-new-tokens``)."""
    try:
        return model(**values)
    except ValidationError as error:
        raise refusal(model, error, dashed=True) from None


class UserSettings(BaseModel):
    """A config whose invalid values raise ``InvalidInputError`` naming the flag; see the module."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise refusal(type(self), error) from None


def refusal(model: type[BaseModel], error: ValidationError, *, dashed: bool = False) -> InvalidInputError:
    """The first problem of ``error`` as one line: the flag and value, the rule, and a value that works.

    A validator's own ``ValueError`` is passed on as written: it already names the flags and the fix.
    Fields may declare ``per_unit`` when the flag counts in larger units than the field (MB, bytes).
    A field that declares no flag is named as it is, or (``dashed``, for the CLI) as ``--its-name``.
    """
    first = error.errors()[0]
    if first["type"] == "value_error":
        return InvalidInputError(str(first["ctx"]["error"]))
    name = str(first["loc"][0]) if first["loc"] else ""
    field = model.model_fields.get(name)
    extra = field.json_schema_extra if field is not None and isinstance(field.json_schema_extra, dict) else {}
    flag = str(extra.get("flag", f"--{name.replace('_', '-')}" if dashed else name))
    per_unit = extra.get("per_unit", 1)
    assert isinstance(per_unit, (int, float))
    rule = first["msg"].replace("Input should be", "must be")
    if first["type"] == "string_pattern_mismatch" and field is not None and field.description:
        rule = f"must be {field.description[0].lower()}{field.description[1:].rstrip('.')}"
    example = ""
    if field is not None and _is_number(field.default):
        example = f"; pass e.g. {flag} {field.default / per_unit:g}"
    return InvalidInputError(f"{flag} {_shown(first['input'], per_unit)}: {rule}{example}.")


def not_unicode(text: str) -> str | None:
    """Why ``text`` is no Unicode text (a lone surrogate: bytes of another encoding in a command line or
    file name, or half a UTF-16 pair from JSON), or None; the tokenizer would crash on it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (
            f"holds {text[error.start]!r} at position {error.start}, which is no character (bytes that are "
            "not UTF-8, or half of a UTF-16 surrogate pair)"
        )
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value: object, per_unit: float) -> str:
    return f"{value / per_unit:g}" if isinstance(value, (int, float)) and _is_number(value) else repr(value)
