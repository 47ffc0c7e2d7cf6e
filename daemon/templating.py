"""Playbook templates (`{{ labels.deployment }}`) and `when` conditions, in Jinja2's sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)  # noqa: S701 - not HTML


class TemplateProblem(ValueError):
    """A template or condition that does not compile or cannot be evaluated."""


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_template(text: str) -> None:
    try:
        _ENV.parse(text)
    except TemplateError as exc:
        raise TemplateProblem(f"bad template: {exc}") from None


def check_expression(text: str) -> None:
    try:
        _compiled_expression(text)
    except TemplateError as exc:
        raise TemplateProblem(f"bad condition: {exc}") from None


@lru_cache(maxsize=512)
def _compiled_expression(text: str) -> Any:
    return _ENV.compile_expression(text, undefined_to_none=False)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template string inside `value` (dicts and lists are walked)."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            return _ENV.from_string(value).render(context)
        except TemplateError as exc:
            raise TemplateProblem(f"cannot render {value!r}: {exc}") from None
    if isinstance(value, Mapping):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, context) for v in value]
    return value


def evaluate(expression: str, context: Mapping[str, Any]) -> bool:
    try:
        return bool(_compiled_expression(expression)(**context))
    except (TemplateError, TypeError, ArithmeticError) as exc:
        raise TemplateProblem(f"cannot evaluate {expression!r}: {exc}") from None
