"""Validation against the ``openai`` SDK's own types, and OpenAI-style errors (:class:`_ApiError`).

The SDK models silently accept unknown fields, so every validated model tree is also checked for
extras (:func:`_find_unknown_field`).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Any

from openai.types.audio import Transcription, TranscriptionStreamEvent
from openai.types.realtime import (
    RealtimeClientEvent,
    RealtimeServerEvent,
    RealtimeTranscriptionSessionCreateResponse,
)
from pydantic import BaseModel, TypeAdapter, ValidationError


@dataclass(frozen=True)
class _ApiError:
    """An OpenAI-style error: ``code``, ``message``, ``param`` and error ``type``."""

    code: str | None
    message: str
    param: str | None = None
    type: str = "invalid_request_error"

    def body(self, event_id: str | None = None, *, realtime: bool = False) -> dict[str, Any]:
        err: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
        }
        if realtime:
            err["event_id"] = event_id
        return err


def _union_members(alias: Any) -> dict[str, type[BaseModel]]:
    """Map each ``type`` literal of an (annotated) union of SDK event models to its model."""
    union = typing.get_args(alias)[0]
    members: dict[str, type[BaseModel]] = {}
    for member in typing.get_args(union):
        for literal in typing.get_args(member.model_fields["type"].annotation):
            members[literal] = member
    return members


_CLIENT_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
_SERVER_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
_CLIENT_EVENT_TYPES = _union_members(RealtimeClientEvent)
_SERVER_EVENT_TYPES = _union_members(RealtimeServerEvent)
_TRANSCRIPTION_SESSION_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    RealtimeTranscriptionSessionCreateResponse
)
_STT_STREAM_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(TranscriptionStreamEvent)
_STT_RESPONSE_ADAPTER: TypeAdapter[Any] = TypeAdapter(Transcription)
_MEMBER_ADAPTERS: dict[type[BaseModel], TypeAdapter[Any]] = {}

_PRIMITIVE_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def _is_branch_tag(token: object) -> bool:
    """Whether a pydantic error-location token names a union branch rather than a field."""
    if not isinstance(token, str):
        return False
    return bool(re.fullmatch(r"[A-Z]\w*", token)) or "[" in token or token in _PRIMITIVE_TAGS


def _format_loc(loc: tuple[Any, ...]) -> str:
    path = ""
    for token in loc:
        if _is_branch_tag(token):
            continue
        if isinstance(token, int):
            path += f"[{token}]"
        else:
            path += f".{token}" if path else str(token)
    return path


def _pick_error(exc: ValidationError) -> _ApiError:
    """Turn a pydantic error into the service's style, ignoring union branches ruled out by
    their ``type`` discriminator (pydantic reports every branch of a non-discriminated union)."""
    errors = exc.errors()
    wrong_branches = [
        e["loc"][:-1]
        for e in errors
        if e["type"] == "literal_error"
        and e["loc"]
        and e["loc"][-1] == "type"
        and len(e["loc"]) >= 2
        and _is_branch_tag(e["loc"][-2])
    ]
    relevant = [
        e for e in errors if not any(e["loc"][: len(b)] == b for b in wrong_branches)
    ] or errors
    e = relevant[0]
    path = _format_loc(tuple(e["loc"]))
    kind = e["type"]
    if kind == "missing":
        return _ApiError(
            "missing_required_parameter", f"Missing required parameter: '{path}'.", path
        )
    if kind == "literal_error":
        expected = (e.get("ctx") or {}).get("expected", "")
        return _ApiError(
            "invalid_value",
            f"Invalid value: {e['input']!r} for '{path}'. Supported values are: {expected}.",
            path,
        )
    if kind.endswith("_type") or kind in {"model_type", "dict_type", "list_type"}:
        return _ApiError(
            "invalid_type",
            f"Invalid type for '{path}': {e['msg']}, but got {type(e['input']).__name__}.",
            path,
        )
    return _ApiError("invalid_value", f"Invalid value for '{path}': {e['msg']}.", path)


def _find_unknown_field(
    obj: object, path: str, allowed_extra: dict[str, frozenset[str]] | None = None
) -> str | None:
    """Return the path of the first unknown (extra) field in a validated model tree, or None."""
    if isinstance(obj, BaseModel):
        extra = obj.__pydantic_extra__ or {}
        allowed = (allowed_extra or {}).get(path, frozenset())
        for key in extra:
            if key not in allowed:
                return f"{path}.{key}" if path else key
        for name, info in type(obj).model_fields.items():
            key = info.alias or name
            child = f"{path}.{key}" if path else key
            found = _find_unknown_field(getattr(obj, name), child, allowed_extra)
            if found:
                return found
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            found = _find_unknown_field(item, f"{path}[{i}]", allowed_extra)
            if found:
                return found
    elif isinstance(obj, dict):
        for key, value in obj.items():
            found = _find_unknown_field(value, f"{path}.{key}", allowed_extra)
            if found:
                return found
    return None


def _validate_event(
    data: object,
    *,
    adapter: TypeAdapter[Any],
    members: dict[str, type[BaseModel]],
    allowed_extra: dict[str, frozenset[str]] | None = None,
) -> tuple[Any, _ApiError | None]:
    """Validate one event dict against an SDK event union, strictly (no unknown fields)."""
    if not isinstance(data, dict):
        return None, _ApiError(
            "invalid_type", "Invalid event: expected a JSON object at the top level.", None
        )
    event_type = data.get("type")
    if not isinstance(event_type, str):
        return None, _ApiError("missing_required_parameter", "Missing required parameter: 'type'.")
    if event_type not in members:
        supported = ", ".join(repr(t) for t in sorted(members))
        return None, _ApiError(
            "invalid_value",
            f"Invalid value: {event_type!r}. Supported values are: {supported}.",
            "type",
        )
    try:
        model = adapter.validate_python(data)
    except ValidationError:
        member = members[event_type]
        member_adapter = _MEMBER_ADAPTERS.get(member)
        if member_adapter is None:
            member_adapter = _MEMBER_ADAPTERS[member] = TypeAdapter(member)
        try:
            member_adapter.validate_python(data)
        except ValidationError as exc:
            return None, _pick_error(exc)
        return None, _ApiError("invalid_value", f"Invalid '{event_type}' event.")
    unknown = _find_unknown_field(model, "", allowed_extra)
    if unknown:
        return None, _ApiError("unknown_parameter", f"Unknown parameter: '{unknown}'.", unknown)
    return model, None


def validate_client_event(data: object) -> tuple[Any, _ApiError | None]:
    """Validate a decoded client event against ``RealtimeClientEvent`` (no unknown fields)."""
    return _validate_event(data, adapter=_CLIENT_EVENT_ADAPTER, members=_CLIENT_EVENT_TYPES)


_SESSION_OBJECT_EXTRAS = {"session": frozenset({"id", "object", "expires_at"})}


def validate_server_event(data: dict[str, Any]) -> str | None:
    """Validate an event the fake is about to send; returns a failure description or None."""
    _, err = _validate_event(
        data,
        adapter=_SERVER_EVENT_ADAPTER,
        members=_SERVER_EVENT_TYPES,
        allowed_extra=_SESSION_OBJECT_EXTRAS,
    )
    if err is not None:
        return f"server event {data.get('type')!r}: {err.message}"
    session = data.get("session")
    if isinstance(session, dict) and session.get("type") == "transcription":
        try:
            obj = _TRANSCRIPTION_SESSION_ADAPTER.validate_python(session)
        except ValidationError as exc:
            return f"server event {data.get('type')!r} session: {_pick_error(exc).message}"
        unknown = _find_unknown_field(obj, "session")
        if unknown:
            return f"server event {data.get('type')!r}: unknown field {unknown!r}"
    return None


def _validate_plain(adapter: TypeAdapter[Any], data: object, what: str) -> str | None:
    try:
        obj = adapter.validate_python(data)
    except ValidationError as exc:
        return f"{what}: {_pick_error(exc).message}"
    unknown = _find_unknown_field(obj, "")
    return f"{what}: unknown field {unknown!r}" if unknown else None
