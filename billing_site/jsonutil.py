"""JSON that keeps decimals exact: parse numbers with fractions as Decimal and write Decimals as
JSON numbers (the standard encoder refuses them and Django's writes them as strings).

Nesting is bounded on the way in (`MAX_JSON_DEPTH`) and never recursed over on the way out, so no
body, form or stored value can raise a RecursionError (a 500 with a long trace) anywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import cast

# Levels of objects and arrays a parsed document may have (the document itself is level 1).
# The deepest legitimate body, a meter with a 3-level filter, has 8.
MAX_JSON_DEPTH = 32

_dump_string = json.JSONEncoder(ensure_ascii=False).encode


class JSONTooDeep(ValueError):
    """A document nested more than `MAX_JSON_DEPTH` levels; `path` leads to the first container
    beyond the limit (empty when the parser itself gave up, so no path is known)."""

    def __init__(self, max_depth: int, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(f"the JSON is nested more than {max_depth} levels deep")
        self.max_depth = max_depth
        self.path = path


def too_deep_path(value: object, max_depth: int = MAX_JSON_DEPTH) -> tuple[str | int, ...] | None:
    """The path (keys and indexes) to the first object or array nested deeper than `max_depth`
    levels, or None. Iterative, so it works on values any recursive walk would choke on; level
    by level without paths first (every body pays this), the path only for a value refused."""
    level = [value] if isinstance(value, _CONTAINERS) else []
    for _ in range(max_depth):
        below: list = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below += [child for child in children if isinstance(child, _CONTAINERS)]
        if not below:
            return None
        level = below
    return _path_below(value, max_depth)


_CONTAINERS = (dict, list, tuple)


def _path_below(value: object, max_depth: int) -> tuple[str | int, ...]:
    """The path to the first container deeper than `max_depth` (one is known to exist)."""
    pending: list[tuple[object, int, tuple[str | int, ...]]] = [(value, 1, ())]
    while pending:
        item, depth, path = pending.pop()
        if depth > max_depth:
            return path
        entries = item.items() if isinstance(item, dict) else enumerate(cast(list, item))
        for key, child in reversed(list(entries)):
            if isinstance(child, _CONTAINERS):
                pending.append((child, depth + 1, (*path, key)))
    return ()


# A JSON string (with a following colon when it is an object key), a bracket or a comma.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"(\s*:)?|[\[\]{},]')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
# Tokens read to locate a too-deep value; past them the answer names the whole body (a 5 MB
# body is ~2 million tokens, ~1 s of Python: not to be spent on a request being refused).
_MAX_TOKENS_SCANNED = 100_000


def _brackets_balance(text: str) -> bool:
    """Outside strings, as many closing brackets as opening ones (regular expressions and
    counting only: C speed). False proves the text is not JSON."""
    outside = _STRING.sub("", text)
    return outside.count("[") == outside.count("]") and outside.count("{") == outside.count("}")


def _too_deep_path_in_text(text: str, max_depth: int) -> tuple[str | int, ...]:
    """Where the parser gave up: the path to the first container deeper than `max_depth`, read
    off the text's tokens (only on that failure, so its cost never falls on good bodies)."""
    frames: list[list] = []  # [is_object, key or index] per open container
    for count, token in enumerate(_TOKEN.finditer(text)):
        if count >= _MAX_TOKENS_SCANNED:
            return ()
        lexeme = token.group()
        if lexeme in "{[":
            if len(frames) >= max_depth:
                return tuple(frame[1] for frame in frames)
            frames.append([lexeme == "{", None if lexeme == "{" else 0])
        elif lexeme in "}]":
            if frames:
                frames.pop()
        elif lexeme == ",":
            if frames and not frames[-1][0]:
                frames[-1][1] += 1
        elif token.group(1) and frames and frames[-1][0]:
            try:
                frames[-1][1] = json.loads(lexeme[: token.start(1) - token.start()])
            except ValueError:
                frames[-1][1] = None
    return ()


def exact_dumps(value: object, *, default: Callable[[object], object] | None = None) -> str:
    """Serialize dicts, lists, str, int, Decimal, bool and None; numbers are written exactly.

    `default` converts any other value (as `json.dumps(default=...)`); without it they raise
    TypeError. Containers are walked with an explicit stack, not recursion, so any depth works.
    """
    out: list[str] = []
    # One frame per open container: its remaining entries, whether it is an object, and whether
    # an entry was written yet (for the commas).
    stack: list[list] = []
    item = value
    while True:
        if item is not None and default is not None and not isinstance(item, _NATIVE):
            item = default(item)
            continue
        if isinstance(item, dict):
            out.append("{")
            stack.append([iter(item.items()), True, False])
        elif isinstance(item, list | tuple):
            out.append("[")
            stack.append([iter(item), False, False])
        else:
            out.append(_scalar(item))
        # Write entries until one opens a container (it becomes `item`) or every frame is done.
        item = _DONE
        while stack and item is _DONE:
            frame = stack[-1]
            entries, is_object, started = frame
            for entry in entries:
                if started:
                    out.append(",")
                started = True
                if is_object:
                    key, entry = entry
                    out.append(_dump_string(str(key)) + ":")
                kind = type(entry)
                if kind is str:  # the common cases first: this loop is the ingest hot path
                    out.append(_dump_string(entry))
                elif kind is int or kind is Decimal and entry.is_finite():
                    out.append(str(entry))
                elif isinstance(entry, dict | list | tuple) or (
                    default is not None and entry is not None and not isinstance(entry, _NATIVE)
                ):
                    item = entry
                    break
                else:
                    out.append(_scalar(entry))
            frame[2] = started
            if item is _DONE:
                stack.pop()
                out.append("}" if is_object else "]")
        if item is _DONE:
            return "".join(out)


_NATIVE = (dict, list, tuple, str, int, Decimal, float)
_DONE = object()


def _scalar(value: object) -> str:
    if isinstance(value, str):
        return _dump_string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int | Decimal):
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return str(value)
    if isinstance(value, float):
        return _scalar(Decimal(repr(value)))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid JSON number")


def exact_loads(text: str | bytes, *, max_depth: int | None = MAX_JSON_DEPTH) -> object:
    """Parse JSON with exact decimals; NaN and Infinity (not JSON) raise ValueError, and nesting
    deeper than `max_depth` raises JSONTooDeep (a ValueError), whether the parser gave up on it
    (its RecursionError would be a 500) or the parsed value is found too deep. Only a body the
    parser gave up on is scanned again (to say where), so good bodies pay one tree walk."""
    try:
        value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except RecursionError:
        # Too deep for the parser itself: valid JSON (as far as its brackets tell) is too deep,
        # like any value past max_depth; unbalanced brackets are plainly not JSON.
        if isinstance(text, bytes | bytearray):
            text = text.decode("utf-8", "replace")
        if not _brackets_balance(text):
            raise ValueError(
                "the JSON is nested too deeply and its brackets do not match"
            ) from None
        limit = max_depth or MAX_JSON_DEPTH
        raise JSONTooDeep(limit, _too_deep_path_in_text(text, limit)) from None
    if max_depth is not None:
        path = too_deep_path(value, max_depth)
        if path is not None:
            raise JSONTooDeep(max_depth, path)
    return value


class ExactJSONEncoder(json.JSONEncoder):
    """For JSONField(encoder=...): Django calls `json.dumps(value, cls=encoder)`."""

    def encode(self, o) -> str:
        return exact_dumps(o)


class ExactJSONDecoder(json.JSONDecoder):
    """For JSONField(decoder=...): numbers with a fraction come back as Decimal. Documents nested
    deeper than MAX_JSON_DEPTH are refused as invalid JSON, so an admin form cannot store one."""

    def __init__(self, *args, **kwargs):
        kwargs["parse_float"] = Decimal
        super().__init__(*args, **kwargs)

    def decode(self, s, *args, **kwargs):
        try:
            value = super().decode(s, *args, **kwargs)
        except RecursionError:
            raise json.JSONDecodeError(
                f"nested more than {MAX_JSON_DEPTH} levels deep", s, 0
            ) from None
        if too_deep_path(value) is not None:
            raise json.JSONDecodeError(f"nested more than {MAX_JSON_DEPTH} levels deep", s, 0)
        return value
