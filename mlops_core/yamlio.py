"""Load YAML into pydantic models with errors that name the field *and the line*.

PyYAML's composer keeps the position of every node; after pydantic rejects a document we
walk the error's location through the node tree to report ``file:line: field: message``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from mlops_core.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node along ``loc`` that exists in the document."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    node = value_node
                    line = key_node.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def format_validation_error(err: ValidationError, source: str, root: yaml.Node | None) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        field = ".".join(str(p) for p in loc) or "(document)"
        line = _line_of(root, loc)
        where = f"{source}:{line}" if line else source
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling)"
        lines.append(f"{where}: {field}: {msg}")
    return "\n".join(lines)


def _duplicate_key(root: yaml.Node | None) -> yaml.Node | None:
    """The first key that repeats within one mapping, or None. PyYAML keeps the last of
    them silently; YAML says keys are unique (and kubectl refuses duplicate fields).
    Each node is visited once, so aliases (``*a`` reused many times) cost nothing."""
    seen_nodes: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                    key = (key_node.tag, key_node.value)
                    if key in keys:
                        return key_node
                    keys.add(key)
                stack.extend((key_node, value_node))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return None


def _invalid_yaml(exc: yaml.YAMLError, source: str) -> InvalidInput:
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}" if mark else source
    problem = getattr(exc, "problem", None) or str(exc)
    return InvalidInput(f"invalid YAML: {problem}", where=where)


def compose_yaml(text: str, source: str) -> yaml.Node | None:
    """The node tree of one YAML document (positions kept), or InvalidInput naming the
    line. This is the one parse of the text: values come from the tree
    (:func:`construct_yaml`), not from parsing again."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _invalid_yaml(exc, source) from None


def construct_yaml(root: yaml.Node | None, source: str) -> Any:
    """The Python values of a composed tree, as ``yaml.safe_load`` would give them
    (an alias is one shared object, never a copy)."""
    if root is None:
        return None
    try:
        return yaml.SafeLoader("").construct_document(root)
    except yaml.YAMLError as exc:
        raise _invalid_yaml(exc, source) from None


def check_duplicate_keys(root: yaml.Node | None, source: str) -> None:
    duplicate = _duplicate_key(root)
    if duplicate is not None:
        raise InvalidInput(
            f"invalid YAML: duplicate key {duplicate.value!r} (only the last would count)",
            where=f"{source}:{duplicate.start_mark.line + 1}",
            hint="remove one of them",
        )


def parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse text (once) into (data, node tree) or raise InvalidInput naming the line."""
    root = compose_yaml(text, source)
    data = construct_yaml(root, source)
    check_duplicate_keys(root, source)
    return data, root


def validate_data(data: Any, root: yaml.Node | None, model: type[M], source: str) -> M:
    """Validate parsed data; errors name the line of each field, found in ``root``."""
    if not isinstance(data, dict):
        raise InvalidInput("expected a mapping at the top level", where=source)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise InvalidInput(
            format_validation_error(err, source, root),
            hint=f"fix the field(s) above in {source}",
        ) from None


def validate_yaml(text: str, model: type[M], source: str) -> M:
    data, root = parse_yaml(text, source)
    return validate_data(data, root, model, source)


def line_of(root: yaml.Node | None, *loc: Any) -> int | None:
    """1-based line of the field at ``loc`` (or of its deepest existing parent)."""
    return _line_of(root, loc)


def load_yaml_file(path: Path, model: type[M]) -> M:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InvalidInput(f"file not found: {path}") from None
    return validate_yaml(text, model, str(path))
