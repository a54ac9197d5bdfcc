"""Pydantic's validation errors as one line per problem, in the keys a user wrote.

Pydantic's error locations carry more than the user's keys: at a union it adds the member it tried
(the family of a discriminated union, a type's description otherwise). The location is walked
against the schema instead of matched against those descriptions, so a union step is recognised
by the schema being a union there, whatever pydantic calls the member.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from cifar_ops.redaction import redact_url

# Errors that say only "this member of a union is the wrong kind of value".
_WRONG_KIND = {"model_type", "model_attributes_type", "dict_type", "list_type", "tuple_type"}


@dataclass(frozen=True)
class _Place:
    """Where a location leads in the schema: the user's keys, and the type found there."""

    keys: tuple[str | int, ...]
    schema: Any  # a BaseModel class, another annotation, or None once the schema is left
    discriminator: str | None = None  # the field that picks the member, when `schema` is a union
    member_at: int | None = None  # index in the location of the last union member pydantic named
    parent: Any = None  # the type holding the last key (a model: its fields are the allowed keys)


def format_validation_error(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """One line per problem: dotted key, the value given, and what is allowed there."""
    lines = []
    for error in _without_refused_members(exc.errors(), model):
        place = _walk(model, error["loc"])
        key = _dotted(prefix, place.keys)
        kind = error["type"]
        if kind == "extra_forbidden":
            allowed = _fields(place.parent)
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{key}: unknown key{hint}")
            continue
        if kind in ("union_tag_invalid", "union_tag_not_found") and place.discriminator:
            allowed = _discriminator_values(place.schema, place.discriminator)
            lines.append(f"{key}.{place.discriminator}: must be one of {', '.join(allowed)}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        if isinstance(given, str):
            given = redact_url(given)  # a refused URL may carry a password
        shown = "" if isinstance(given, dict) or kind == "missing" else f"got {given!r}: "
        lines.append(f"{key}: {shown}{message}" if key else f"{shown}{message}")
    return "\n".join(lines)


def _dotted(prefix: str, keys: Sequence[str | int]) -> str:
    """The dotted key; empty for a check across sections, whose message names its own keys."""
    if keys:
        return prefix + ".".join(str(k) for k in keys)
    return prefix.rstrip(".")


def _without_refused_members(errors: list[ErrorDetails], model: type[BaseModel]) -> list[Any]:
    """Drop a union member's "wrong kind of value" error when another member got further.

    A distribution given as a mapping is refused by the list member (not a list) and, say, fails
    the range check of the distribution member; only the second says anything to the user.
    """
    refused, further = [], set()
    for error in errors:
        place = _walk(model, error["loc"])
        at = place.member_at
        is_refusal = at is not None and error["type"] in _WRONG_KIND and len(error["loc"]) == at + 1
        refused.append(tuple(error["loc"][:at]) if is_refusal else None)
        if at is not None and not is_refusal:
            further.add(tuple(error["loc"][:at]))
    return [error for error, union in zip(errors, refused, strict=True) if union not in further]


def _walk(model: type[BaseModel], loc: Sequence[Any]) -> _Place:
    """Follow a pydantic location through the schema, dropping the union members it names."""
    schema: Any = model
    keys: list[str | int] = []
    member_at = None
    parent: Any = None
    discriminator: str | None = None
    for index, part in enumerate(loc):
        schema, discriminator = _unwrap(schema, discriminator)
        members = _members(schema)
        if len(members) > 1:  # pydantic names the member it tried: not a key the user wrote
            member_at = index
            schema = _member(members, part, discriminator, loc[index + 1 :])
            discriminator = None
            continue
        keys.append(part)
        parent = schema
        schema, discriminator = _step(schema, part)
    schema, discriminator = _unwrap(schema, discriminator)
    return _Place(tuple(keys), schema, discriminator, member_at, parent)


def _unwrap(schema: Any, discriminator: str | None) -> tuple[Any, str | None]:
    """Strip `Annotated` (keeping a discriminator it declares) and the `None` of `X | None`."""
    while get_origin(schema) is Annotated:
        schema, *metadata = get_args(schema)
        for item in metadata:
            found = getattr(item, "discriminator", None)
            discriminator = found if isinstance(found, str) else discriminator
    members = _members(schema)
    if len(members) == 1 and _is_union(schema):
        return _unwrap(members[0], discriminator)
    return schema, discriminator


def _is_union(schema: Any) -> bool:
    return get_origin(schema) in (Union, types.UnionType)


def _members(schema: Any) -> list[Any]:
    """A union's members other than None; `[schema]` for anything that is not a union."""
    if not _is_union(schema):
        return [schema]
    return [member for member in get_args(schema) if member is not type(None)]


def _member(members: list[Any], tag: Any, discriminator: str | None, below: Sequence[Any]) -> Any:
    """The member pydantic tried: the one whose discriminator literal is the tag; else the one
    the keys below it fit (an index: the sequence; a name: the only model); None if unsure."""
    if discriminator:
        return next((m for m in members if tag in _literals(m, discriminator)), None)
    named = [m for m in members if _is_model(m) and m.__name__ == tag]
    if named:
        return named[0]
    if below and isinstance(below[0], int):
        sequences = [m for m in members if get_origin(m) in (list, tuple, set, frozenset)]
        return sequences[0] if len(sequences) == 1 else None
    models = [m for m in members if _is_model(m)]
    mappings = [m for m in members if get_origin(m) is dict]
    return models[0] if below and len(models) == 1 and not mappings else None


def _step(schema: Any, part: Any) -> tuple[Any, str | None]:
    """The type one key, index or mapping key below `schema`; None once it is unknown."""
    if _is_model(schema):
        field = schema.model_fields.get(str(part))
        if field is None:
            return None, None
        found = field.discriminator
        return field.annotation, found if isinstance(found, str) else None
    origin, args = get_origin(schema), get_args(schema)
    if origin in (list, set, frozenset) and args:
        return args[0], None
    if origin is tuple and args:
        return args[part if isinstance(part, int) and part < len(args) else 0], None
    if origin is dict and len(args) == 2:
        return args[1], None
    return None, None


def _fields(schema: Any) -> list[str]:
    return sorted(schema.model_fields) if _is_model(schema) else []


def _discriminator_values(schema: Any, discriminator: str) -> list[str]:
    """Every value the discriminator may take, in the union's order."""
    return [value for member in _members(schema) for value in _literals(member, discriminator)]


def _literals(member: Any, field_name: str) -> tuple[Any, ...]:
    if not _is_model(member) or field_name not in member.model_fields:
        return ()
    annotation = member.model_fields[field_name].annotation
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def _is_model(schema: Any) -> bool:
    return isinstance(schema, type) and issubclass(schema, BaseModel)
