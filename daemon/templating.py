"""Playbook templates (`{{ labels.deployment }}`) and `when` conditions, in Jinja2's sandbox,
with limits, so that no template can hang, crash or starve the daemon.

Each `render` and `evaluate` runs under `Limits`: a deadline, a cap on what it outputs and on
the size of every value it builds (strings, lists, dicts, integers, aliases expanded), and a
cap on `range()`. The limits are enforced where Jinja lets a template spend: the arithmetic
operators that can explode (`*`, `**`, `+`, `%`: checked before computing), every call and
filter (checked before and after), every loop step, `~` and list/dict literals, and the
output as it streams. Going past one, or failing in any other way, is a TemplateProblem
saying why; the responder turns that into an escalation.

`check_template` and `check_expression` (run by `validate`) parse, refuse templates nested
too deeply to compile, and evaluate every constant part (`'x' * 10**9`, `10 ** (10 ** 10)`,
`range(10**9)`) under the same limits, so a bomb that needs no data is a validation error.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
import string
import time
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache, update_wrapper
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer


@dataclass(frozen=True, kw_only=True)
class Limits:
    seconds: float = 1.0
    """Wall-clock time of one render (all the strings of a `with:`) or one evaluation."""
    size: int = 64 * 1024
    """Characters rendered, and the size of any value built (characters, items, digits)."""
    range: int = 10_000
    """Items in one `range()` (and in `batch`/`slice` counts)."""
    int_bits: int = 64 * 1024
    """Bits of any integer built by `*` or `**` (about 19,700 digits)."""


LIMITS = Limits()
CHECK_LIMITS = Limits(seconds=1.0)
"""For the constant parts `validate` evaluates: the deadline is for all of them in one
`checking()` block (one playbook file), or for each check outside one."""
MAX_DEPTH = 50
"""How deeply a template's syntax may nest (deeper does not compile to Python)."""
MAX_BLOCKS = 10
"""How deeply `{% for %}`, `{% if %}` and other blocks may nest."""
MAX_TEMPLATES = 1_000
"""Templates and conditions in one playbook (each is parsed and checked by `validate`)."""


class TemplateProblem(ValueError):
    """A template or condition that does not compile or cannot be evaluated."""


class _Overrun(Exception):
    """A limit reached inside a template. Deliberately not a ValueError or TypeError, which
    some filters catch; it becomes a TemplateProblem where the render or evaluation began."""


class _Timeout(_Overrun):
    """The deadline passed."""


# --- the budget of the render or evaluation under way ---------------------------------------


class _Budget:
    __slots__ = ("limits", "deadline", "rendered", "produced")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.rendered = 0  # characters streamed out
        self.produced = 0  # `{{ }}` output anywhere, blocks and macros included


_BUDGET: ContextVar[_Budget | None] = ContextVar("opsmedic_template_budget", default=None)


def _tick() -> _Budget:
    """The current budget, after checking its deadline (called at every step that can
    repeat: loop items, calls, filters, operators)."""
    budget = _BUDGET.get()
    if budget is None:  # outside render/evaluate (Jinja compiling): limits, no deadline
        return _Budget(LIMITS)
    if time.monotonic() > budget.deadline:
        raise _Timeout(f"took longer than {budget.limits.seconds:g}s (the limit)")
    return budget


def _size(value: Any, limit: int, per_level: int = 0) -> int:
    """The size of `value` (characters, items, digits; shared parts counted each time they
    appear), counted only until it passes `limit`: cost O(limit) at most. `per_level` adds
    that much per nesting level of every item (the indentation of `tojson(indent=...)`)."""
    total = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack and total <= limit:
        item, level = stack.pop()
        total += 1 + level * per_level
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            total += item.bit_length() // 3
        elif isinstance(item, _GuardedRange):
            total += len(item) * 2
        elif isinstance(item, Mapping):
            total += len(item)
            if total <= limit:
                stack.extend((v, level + 1) for pair in item.items() for v in pair)
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            if total <= limit:
                stack.extend((v, level + 1) for v in item)
    return total


def _checked(value: Any, what: str = "builds a value") -> Any:
    limit = _tick().limits.size
    if _size(value, limit) > limit:
        raise _Overrun(f"{what} larger than {limit:,} characters or items (the limit)")
    return value


def _too_much(amount: int, limit: int, what: str, unit: str = "") -> None:
    if amount > limit:
        raise _Overrun(f"{what} would be {amount:,}{unit} long; the limit is {limit:,}{unit}")


def _number(value: int) -> str:
    return str(value) if value.bit_length() < 256 else f"a {value.bit_length():,}-bit number"


# --- values the sandbox hands out ------------------------------------------------------------


class _GuardedRange(Sequence[int]):
    """`range()` in a template: at most `Limits.range` items, each step checks the deadline."""

    def __init__(self, inner: range) -> None:
        self._inner = inner

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, index: Any) -> Any:
        item = self._inner[index]
        return _GuardedRange(item) if isinstance(item, range) else item

    def __iter__(self) -> Iterator[int]:
        for item in self._inner:
            _tick()
            yield item

    def __reversed__(self) -> Iterator[int]:
        return iter(_GuardedRange(self._inner[::-1]))

    def __contains__(self, item: object) -> bool:
        return item in self._inner

    def __repr__(self) -> str:
        return repr(self._inner)


def _range(*args: int) -> _GuardedRange:
    limits = _tick().limits
    inner = range(*args)
    try:
        length = len(inner)
    except OverflowError:  # longer than sys.maxsize
        length = -((inner.start - inner.stop) // inner.step)
    if length > limits.range:
        raise _Overrun(f"range() of {length:,} items; the limit is {limits.range:,}")
    return _GuardedRange(inner)


def _guarded_iter(items: Iterable[Any]) -> Iterator[Any]:
    """A loop over `items`: each step checks the deadline; at most `Limits.size` steps."""
    limit = _tick().limits.size
    for count, item in enumerate(items):
        if count >= limit:
            raise _Overrun(f"iterates over more than {limit:,} items (the limit)")
        _tick()
        yield item


def _take(items: Iterable[Any], limit: int) -> list[Any]:
    taken = list(itertools.islice(_guarded_iter(items), limit + 1))
    _too_much(len(taken), limit, "a sequence")
    return taken


def _join(pieces: Iterable[Any]) -> str:
    """`~` and the buffers of blocks and macros: counted as they are joined."""
    limit = _tick().limits.size
    out: list[str] = []
    total = 0
    for piece in pieces:
        text = str(piece)
        total += len(text)
        if total > limit:
            raise _Overrun(f"builds a string larger than {limit:,} characters (the limit)")
        out.append(text)
    return "".join(out)


# --- checks before an operation that could allocate without bound ----------------------------

_PERCENT_SPEC = re.compile(rb"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent_format(fmt: Any, limit: int) -> None:
    if not isinstance(fmt, str | bytes):
        return
    raw = fmt.encode("utf-8", "surrogatepass") if isinstance(fmt, str) else fmt
    for match in _PERCENT_SPEC.finditer(raw):
        for part in match.groups():
            if part == b"*":
                raise _Overrun("'*' widths in % formats are not supported in templates")
            if part is not None and (len(part) > 9 or int(part) > limit):
                raise _Overrun(f"a % format width of {part.decode()}; the limit is {limit:,}")


def _check_brace_format(fmt: str, limit: int) -> None:
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format reports it
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:
            raise _Overrun("nested {} in a format spec are not supported in templates")
        for digits in re.findall(r"\d+", spec):
            if len(digits) > 9 or int(digits) > limit:
                raise _Overrun(f"a format width of {digits}; the limit is {limit:,}")


def _check_binop(operator: str, left: Any, right: Any, limits: Limits) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints and right > 0 and abs(left) > 1:
        bits = int(math.log2(abs(left)) * right) + 1
        _too_much(bits, limits.int_bits, f"{_number(left)} ** {_number(right)}", " bits")
    elif operator == "*":
        if ints:
            bits = left.bit_length() + right.bit_length()
            _too_much(bits, limits.int_bits, "the product", " bits")
        elif isinstance(left, str | bytes | list | tuple) and isinstance(right, int):
            _too_much(len(left) * right, limits.size, "the repetition")
        elif isinstance(right, str | bytes | list | tuple) and isinstance(left, int):
            _too_much(len(right) * left, limits.size, "the repetition")
    elif operator == "+":
        if isinstance(left, str | bytes | list | tuple) and isinstance(right, Sized):
            _too_much(len(left) + len(right), limits.size, "the concatenation")
    elif operator == "%":
        _check_percent_format(left, limits.size)


def _check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Size checks for the methods of strings and ints that can build huge values from small
    arguments. Returns the arguments to call with (a `join` argument is materialized)."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    limit = _tick().limits.size

    def arg(position: int, keyword: str, default: Any = None) -> Any:
        return args[position] if len(args) > position else kwargs.get(keyword, default)

    if isinstance(owner, str | bytes):
        if name in ("center", "ljust", "rjust", "zfill"):
            width = arg(0, "width")
            if isinstance(width, int):
                _too_much(width, limit, f"{name}() width")
        elif name == "expandtabs":
            tabsize = arg(0, "tabsize", 8)
            if isinstance(tabsize, int):
                tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
                _too_much(len(owner) + tabs * tabsize, limit, "expandtabs() result")
        elif name == "replace" and len(args) >= 2:
            _check_replace(owner, args[0], args[1], arg(2, "count", -1), limit)
        elif name == "join" and args:
            items = _take(args[0], limit)
            total = sum(len(i) for i in items if isinstance(i, str | bytes))
            _too_much(total + len(owner) * max(len(items) - 1, 0), limit, "join() result")
            return (items, *args[1:])
        elif name == "translate":
            table = arg(0, "table")
            longest = (
                max((len(v) for v in table.values() if isinstance(v, str | bytes)), default=1)
                if isinstance(table, Mapping)
                else 1
            )
            _too_much(len(owner) * max(longest, 1), limit, "translate() result")
    elif isinstance(owner, int) and name == "to_bytes":
        length = arg(0, "length", 1)
        if isinstance(length, int):
            _too_much(length, limit, "to_bytes() length")
    return args


def _check_replace(text: Any, old: Any, new: Any, count: Any, limit: int) -> None:
    if not (isinstance(text, str | bytes) and type(old) is type(text) and type(new) is type(text)):
        return
    hits = len(text) + 1 if not old else text.count(old)  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    _too_much(len(text) + hits * (len(new) - len(old)), limit, "replace() result")


# --- filters: every one checks the deadline and the size of what it returns ------------------

_DROPPED_FILTERS = frozenset({"urlize", "xmlattr"})  # HTML helpers that can amplify output


def _filter_checks(name: str, bound: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    """Checks before running the filters whose parameters can multiply their output.
    Returns replacements for arguments (a `join` input is materialized)."""
    limit = limits.size
    value = bound.get("value", bound.get("s"))
    if name == "center":
        width = bound.get("width", 80)
        if isinstance(width, int):
            _too_much(width, limit, "center() width")
    elif name == "indent":
        width = bound.get("width", 4)
        step = width if isinstance(width, int) else len(str(width))
        text = str(value)
        _too_much(len(text) + (text.count("\n") + 1) * step, limit, "indent() result")
    elif name == "format":
        _check_percent_format(value, limit)
    elif name in ("batch", "slice"):
        count = bound.get("linecount", bound.get("slices"))
        if isinstance(count, int):
            _too_much(count, limits.range, f"{name}() count")
    elif name == "tojson":
        indent = bound.get("indent")
        step = indent if isinstance(indent, int) else len(indent) if isinstance(indent, str) else 0
        _too_much(step, 16, "tojson() indent")
        if _size(value, limit, per_level=step + 1) > limit:
            raise _Overrun(f"tojson() result larger than {limit:,} characters (the limit)")
    elif name == "pprint":
        if _size(value, limit, per_level=2) > limit:
            raise _Overrun(f"pprint() result larger than {limit:,} characters (the limit)")
    elif name == "replace":
        _check_replace(str(value), bound.get("old"), bound.get("new"), bound.get("count"), limit)
    elif name == "wordwrap":
        text = str(value)
        width = bound.get("width", 79)
        wrap = bound.get("wrapstring") or "\n"
        if isinstance(width, int):
            breaks = len(text) // max(width, 1) + text.count("\n") + 1
            _too_much(len(text) + breaks * len(str(wrap)), limit, "wordwrap() result")
    elif name == "join":
        items = value if isinstance(value, Sized) else _take(value, limit)
        separator = bound.get("d", "")
        _too_much(len(items) * len(str(separator)), limit, "join() separators")
        return {"value": items}
    elif name == "sum":
        start = bound.get("start", 0)
        if not isinstance(start, int | float):
            raise _Overrun("sum() adds numbers only in templates (start must be a number)")
    return {}


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(func)
    checked = name in (
        "center indent format batch slice tojson pprint replace wordwrap join sum".split()
    )

    def guarded(*args: Any, **kwargs: Any) -> Any:
        limits = _tick().limits
        if checked:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                pass  # the filter itself reports the wrong arguments
            else:
                bound.apply_defaults()
                replace = _filter_checks(name, bound.arguments, limits)
                if replace:
                    bound.arguments.update(replace)
                    args, kwargs = bound.args, bound.kwargs
        result = func(*args, **kwargs)
        if isinstance(result, Iterator):
            return _guarded_iter(result)
        return _checked(result, f"the {name} filter returns a value")

    return update_wrapper(guarded, func)  # keeps the pass_context/eval_context marks


OUTPUT_FACTOR = 16
"""All `{{ }}` output of one render, buffered blocks and macros included, is at most this many
times `Limits.size` (what is streamed out is at most `Limits.size`)."""


def _finalize(value: Any) -> Any:
    """Every `{{ }}` goes through here before it is turned into text."""
    budget = _tick()
    limit = budget.limits.size
    size = _size(value, limit)
    if size > limit:
        raise _Overrun(f"outputs a value larger than {limit:,} characters or items (the limit)")
    budget.produced += size
    if budget.produced > limit * OUTPUT_FACTOR:
        raise _Overrun(
            f"outputs more than {limit * OUTPUT_FACTOR:,} characters in all, blocks and macros "
            "included (the limit)"
        )
    return value


# --- the environment ---------------------------------------------------------------------------


class _Guard(NodeTransformer):
    """Rewrites a parsed template so that loops, `~` and literals go through the checks."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)  # children are rewritten in place
        node.iter = _filter(typing.cast(nodes.Expr, node.iter), "opsmedic_loop")
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter(nodes.List(node.nodes, lineno=node.lineno), "opsmedic_join")

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _filter(node, "opsmedic_value")

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        return _filter(node, "opsmedic_value")

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        return _filter(node, "opsmedic_value") if node.ctx == "load" else node


def _filter(node: nodes.Expr, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(_join)  # what compiled templates join block and macro output with

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            optimized=False,  # no constant folding at compile time: it would run unguarded
            finalize=_finalize,
        )
        self.globals["range"] = _range
        self.globals.pop("lipsum", None)  # writes paragraphs by the thousand
        self.filters = {
            name: _guarded_filter(name, func)
            for name, func in self.filters.items()
            if name not in _DROPPED_FILTERS
        }
        self.filters["opsmedic_loop"] = _guarded_iter
        self.filters["opsmedic_join"] = _join
        self.filters["opsmedic_value"] = _checked

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        guarded = _Guard().visit(source)
        guarded.set_environment(self)
        return super()._generate(guarded, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right, _tick().limits)
        return _checked(super().call_binop(context, operator, left, right))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        args = _check_method(obj, args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        if isinstance(result, Iterator):
            return _guarded_iter(result)
        return _checked(result, "a call returns a value")

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt = value.__self__
        format_ = wrapper

        def guarded(*args: Any, **kwargs: Any) -> str:
            _check_brace_format(fmt, _tick().limits.size)
            result: str = _checked(format_(*args, **kwargs), "str.format() returns a value")
            return result

        return update_wrapper(guarded, wrapper)


_ENV = _Environment()

# What a template can raise, besides TemplateError: limits, and Python's own errors on bad
# operands ('x' + 1, 1/0, int('x' * 5000)), deep recursion of a macro calling itself.
_FAILURES = (
    TemplateError,
    _Overrun,
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
    AttributeError,
    RuntimeError,
    MemoryError,
    SyntaxError,  # Python refusing what a template compiled to (blocks nested too deeply)
)


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _quote(text: str) -> str:
    return repr(text) if len(text) <= 80 else f"{text[:60]!r}…({len(text):,} characters)"


def _reason(exc: BaseException) -> str:
    """One line saying what went wrong."""
    if isinstance(exc, RecursionError):
        return "nested or recursing too deeply (a macro calling itself?)"
    if isinstance(exc, TemplateSyntaxError):
        where = f" (line {exc.lineno} of the template)" if exc.lineno and exc.lineno > 1 else ""
        return f"{(exc.message or 'syntax error').splitlines()[0]}{where}"
    lines = str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__


# --- validate: parse, bound the nesting, evaluate the constant parts ------------------------


_CHECK_BUDGET: ContextVar[_Budget | None] = ContextVar("opsmedic_check_budget", default=None)
_CHECKED: dict[tuple[bool, str], str | None] = {}  # (is a template, text) -> problem
_CHECKED_MAX = 4096


@contextmanager
def checking(limits: Limits = CHECK_LIMITS) -> Iterator[None]:
    """Within this block, every check_template/check_expression shares one deadline for
    evaluating constant parts (validate uses one block per playbook file, so a file of a
    thousand slow templates is refused in a second, not checked for minutes)."""
    token = _CHECK_BUDGET.set(_Budget(limits))
    try:
        yield
    finally:
        _CHECK_BUDGET.reset(token)


def check_template(text: str) -> None:
    problem = _check_cached(True, text)
    if problem is not None:
        raise TemplateProblem(f"bad template: {problem}")


def check_expression(text: str) -> None:
    problem = _check_cached(False, text)
    if problem is not None:
        raise TemplateProblem(f"bad condition: {problem}")


def _check_cached(template: bool, text: str) -> str | None:
    """The problem with a template or condition, remembered unless it was the deadline."""
    key = (template, text)
    if key in _CHECKED:
        return _CHECKED[key]
    try:
        problem = _template_problem(text) if template else _expression_problem(text)
    except _Timeout as exc:
        return f"a part that needs no data fails: checking it {exc}"
    if len(_CHECKED) >= _CHECKED_MAX:
        _CHECKED.clear()
    _CHECKED[key] = problem
    return problem


def _template_problem(text: str) -> str | None:
    if len(text) > LIMITS.size:
        return f"longer than {LIMITS.size:,} characters"
    try:
        tree = _ENV.parse(text)
    except TemplateError as exc:
        return _reason(exc)
    except RecursionError:
        return "nested too deeply"
    return _static_problem(tree)


def _expression_problem(text: str) -> str | None:
    if len(text) > LIMITS.size:
        return f"longer than {LIMITS.size:,} characters"
    try:
        parser = Parser(_ENV, text, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            return f"unexpected {parser.stream.current.value!r} after the expression"
    except TemplateError as exc:
        return _reason(exc)
    except RecursionError:
        return "nested too deeply"
    return _static_problem(expr)


_BLOCKS = (
    nodes.For,
    nodes.If,
    nodes.Macro,
    nodes.CallBlock,
    nodes.FilterBlock,
    nodes.With,
    nodes.AssignBlock,
    nodes.Block,
    nodes.Scope,
    nodes.ScopedEvalContextModifier,
)


def _static_problem(tree: nodes.Node) -> str | None:
    order: list[nodes.Node] = []  # every node, parents before children
    stack: list[tuple[nodes.Node, int, int]] = [(tree, 1, 0)]
    while stack:
        node, depth, blocks = stack.pop()
        blocks += isinstance(node, _BLOCKS)
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep"
        if blocks > MAX_BLOCKS:
            return f"blocks nested more than {MAX_BLOCKS} deep"
        order.append(node)
        stack.extend((child, depth + 1, blocks) for child in node.iter_child_nodes())
    parts = _constant_parts(tree, order)
    if not parts:
        return None
    token = _BUDGET.set(_CHECK_BUDGET.get() or _Budget(CHECK_LIMITS))
    try:
        for part in parts:
            problem = _evaluate_constant(part)
            if problem is not None:
                return problem
    finally:
        _BUDGET.reset(token)
    return None


_CONSTANT_NAMES = frozenset({"range", "dict", "namespace", "cycler", "joiner"})
_NEVER_CONSTANT = (
    nodes.NSRef,  # a `{% set ns.x = %}` target
    nodes.ContextReference,
    nodes.DerivedContextReference,
    nodes.EnvironmentAttribute,
    nodes.ExtensionAttribute,
    nodes.InternalName,
    nodes.ImportedName,
)
_LEAVES = (nodes.Const, nodes.TemplateData, nodes.Name)
_LITERALS = (*_LEAVES, nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair, nodes.Keyword)


def _constant_parts(tree: nodes.Node, order: list[nodes.Node]) -> list[nodes.Expr]:
    """The largest expressions that need no data (`'x' * 10**9`, `range(10**9)|list`);
    `order` lists the tree's nodes, parents before children."""
    constant: set[int] = set()
    for node in reversed(order):  # children first
        if isinstance(node, nodes.Name):
            is_constant = node.ctx == "load" and node.name in _CONSTANT_NAMES
        elif isinstance(node, nodes.Const | nodes.TemplateData):
            is_constant = True
        elif isinstance(node, _NEVER_CONSTANT) or (
            isinstance(node, nodes.Filter | nodes.Tuple)
            and (getattr(node, "node", True) is None or getattr(node, "ctx", "load") != "load")
        ):
            is_constant = False
        elif isinstance(node, nodes.Expr | nodes.Pair | nodes.Keyword | nodes.Operand):
            is_constant = all(id(c) in constant for c in node.iter_child_nodes())
        else:
            is_constant = False
        if is_constant:
            constant.add(id(node))
    if not constant - {id(n) for n in order if isinstance(n, _LEAVES)}:
        return []
    parts: list[nodes.Expr] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.Expr) and id(node) in constant:
            if not all(isinstance(n, _LITERALS) for n in (node, *node.find_all(nodes.Node))):
                parts.append(node)  # computes something: literals alone are as small as written
            continue
        stack.extend(node.iter_child_nodes())
    return parts


def _evaluate_constant(expr: nodes.Expr) -> str | None:
    _tick()  # before compiling: once the deadline has passed, each check is quick
    body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=expr.lineno or 1)]
    try:
        template = _ENV.from_string(nodes.Template(body, lineno=1))
        context = template.new_context({})
        for _ in template.root_render_func(context):
            pass
        _checked(context.vars.get("result"))
    except _Timeout:
        raise
    except _FAILURES as exc:
        return f"a part that needs no data fails: {_reason(exc)}"
    return None


# --- run time ---------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _compiled_template(text: str) -> Any:
    return _ENV.from_string(text)


@lru_cache(maxsize=512)
def _compiled_expression(text: str) -> Any:
    return _ENV.compile_expression(text, undefined_to_none=False)


def render(value: Any, context: Mapping[str, Any], *, limits: Limits = LIMITS) -> Any:
    """Render every template string inside `value` (dicts and lists are walked), all of
    them together within `limits`."""
    token = _BUDGET.set(_Budget(limits))
    try:
        return _render(value, context)
    finally:
        _BUDGET.reset(token)


def _render(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            return _render_string(value, context)
        except _FAILURES as exc:
            raise TemplateProblem(f"cannot render {_quote(value)}: {_reason(exc)}") from None
    if isinstance(value, Mapping):
        return {k: _render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render(v, context) for v in value]
    return value


def _render_string(text: str, context: Mapping[str, Any]) -> str:
    budget = _tick()
    limit = budget.limits.size
    out: list[str] = []
    for chunk in _compiled_template(text).generate(context):
        budget.rendered += len(chunk)
        if budget.rendered > limit:
            raise _Overrun(f"renders more than {limit:,} characters (the limit)")
        out.append(chunk)
        _tick()
    return "".join(out)


def evaluate(expression: str, context: Mapping[str, Any], *, limits: Limits = LIMITS) -> bool:
    token = _BUDGET.set(_Budget(limits))
    try:
        return bool(_compiled_expression(expression)(context))
    except _FAILURES as exc:
        raise TemplateProblem(f"cannot evaluate {_quote(expression)}: {_reason(exc)}") from None
    finally:
        _BUDGET.reset(token)
