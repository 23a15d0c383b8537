"""Options generated from the settings they set: each flag's name, default and help declared once, on its field.

A pydantic field names its flag in ``json_schema_extra`` (``{"flag": "--chunk-size"}``, the key
:mod:`llara_rag.settings` names in its refusals) and a training dataclass field in ``metadata``
(``{"flag": "--lr", "help": ...}``, found on the nearest class of the MRO that declares it, so a subclass
may change a default alone). :func:`add_options` turns each into an argparse option with the field's
default; :func:`option_values` reads them back as keyword arguments. A boolean field that defaults to
True is switched off by its flag (``--keep-stopwords`` sets ``remove_stopwords`` to False); ``per_unit``
lets a flag count in larger units than its field (``--max-file-mb`` for bytes); ``dest`` names the
parsed value when the field's name is another option's (the generator's ``model`` is not ``--model``'s).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel


@dataclasses.dataclass(frozen=True)
class Option:
    """One field's command-line face."""

    field: str
    flags: tuple[str, ...]
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    per_unit: float = 1
    dest: str | None = None

    @property
    def name(self) -> str:
        """Where argparse keeps the value."""
        return self.dest or self.field

    def shown(self, value: Any) -> Any:
        """A field value in the flag's unit."""
        return value / self.per_unit if self.per_unit != 1 and value is not None else value

    def stored(self, value: Any) -> Any:
        """A flag value in the field's unit."""
        return round(value * self.per_unit) if self.per_unit != 1 and value is not None else value


def options_of(settings: type) -> list[Option]:
    """The options a pydantic model or a dataclass declares, in field order."""
    if issubclass(settings, BaseModel):
        return [option for name in settings.model_fields if (option := _pydantic_option(settings, name))]
    return [
        option for field in dataclasses.fields(settings) if (option := _dataclass_option(settings, field))
    ]


def _flags(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _pydantic_option(model: type[BaseModel], name: str) -> Option | None:
    info = model.model_fields[name]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "flag" not in extra:
        return None
    choices = get_args(info.annotation) if get_origin(info.annotation) is Literal else None
    per_unit = extra.get("per_unit", 1)
    assert isinstance(per_unit, (int, float))
    dest = extra.get("dest")
    return Option(
        name, _flags(extra["flag"]), info.default, info.description or "", choices, per_unit, dest  # type: ignore[arg-type]
    )


def _dataclass_option(settings: type, field: dataclasses.Field) -> Option | None:
    declared = (getattr(cls, "__dataclass_fields__", {}).get(field.name) for cls in settings.__mro__)
    metadata = next((f.metadata for f in declared if f is not None and "flag" in f.metadata), None)
    if metadata is None:
        return None
    default = field.default if field.default is not dataclasses.MISSING else None
    choices = metadata.get("choices")
    return Option(field.name, _flags(metadata["flag"]), default, metadata.get("help", ""), choices)


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, options: list[Option], **defaults: Any
) -> None:
    """One argparse option per :class:`Option`; ``defaults`` replaces a field's default for this command."""
    for option in options:
        default = defaults.get(option.field, option.default)
        text = option.help.rstrip(".")
        if text[1:2].islower():  # a sentence ("Chunks returned.") reads as the other flags' phrases do
            text = text[0].lower() + text[1:]
        if isinstance(default, bool):
            action = "store_false" if default else "store_true"
            text = f"do not {text[0].lower()}{text[1:]}" if default else text
            parser.add_argument(*option.flags, dest=option.name, action=action, help=text)
            continue
        shown = option.shown(default)
        kind = type(shown) if isinstance(shown, (int, float)) else str
        name = max(option.flags, key=len).lstrip("-").upper().replace("-", "_")
        parser.add_argument(
            *option.flags,
            dest=option.name,
            type=kind,
            default=shown,
            choices=option.choices,
            metavar=None if option.choices else name,
            help=f"{text} (default: {shown if shown is not None else 'none'})",
        )


def option_values(args: argparse.Namespace, options: list[Option]) -> dict[str, Any]:
    """The keyword arguments of the settings ``options`` came from, in the fields' units."""
    return {option.field: option.stored(getattr(args, option.name)) for option in options}
