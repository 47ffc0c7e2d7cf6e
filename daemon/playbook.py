"""The playbook model (the user-facing YAML contract) and its loader with file:line errors."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from daemon.actions import ACTIONS, ActionParams
from daemon.diagnosis import CausePatterns
from daemon.durations import Duration
from daemon.errors import ConfigError
from daemon.inhibit import InhibitRule
from daemon.registry import did_you_mean
from daemon.templating import (
    MAX_TEMPLATES,
    TemplateProblem,
    check_expression,
    check_template,
    checking,
    is_template,
    render,
)
from daemon.yamlsource import Loc, Source, read_yaml, validation_problems
from probes import PROBES, ProbeConfig

NAME = r"^[a-z0-9][a-z0-9_.-]*$"
ESCALATE = "escalate"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Policy(Model):
    max_attempts: int = Field(3, ge=0, description="Actions per incident, over all its actions")
    verify_after: Duration = Field(60.0, description="Wait after an action before re-checking")
    cooldown: Duration = Field(
        1800.0,
        description="After acting on a target, escalate rather than act on it again this soon",
    )
    shadow: bool = Field(
        False,
        validation_alias=AliasChoices("shadow", "dry_run"),
        description="Shadow mode: detect, diagnose and guard, record what would have been "
        "done, never act (`dry_run` is the old name)",
    )
    action_retries: int = Field(2, ge=0, le=10, description="Retries of a temporary failure")


class Diagnose(Model):
    agent: str = Field(
        "auto",
        pattern=NAME,
        description="rules | auto (the config's default LLM agent, else rules) | an agent "
        "named in the config's `agents:`",
    )
    hints: str = Field("", description="Context for the agent, e.g. how deploys happen")


class SlackEscalation(Model):
    channel: str | None = Field(None, description="Overrides the daemon's default channel")
    mention: str | None = Field(None, description="Who to mention, e.g. <!subteam^S123>")


class Escalate(Model):
    slack: SlackEscalation = Field(default_factory=SlackEscalation)


class ActionStepBase(Model):
    id: str = Field(pattern=NAME, description="The name agents choose this action by")
    description: str = ""
    when: str | None = Field(None, description="Jinja condition; the action is skipped if false")
    max_attempts: int = Field(1, ge=1, description="Tries of this action per incident")

    @field_validator("when")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            check_expression(value)
        return value

    uses: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    ignore_causes: bool | list[str] = Field(
        False,
        description="Run this action even when these causes (or, with true, any cause) say "
        "its kind cannot help; the default trusts every cause",
    )
    agent_may_set: list[str] = Field(
        default_factory=list,
        description="Parameters an LLM agent may override within the action's bounds (e.g. "
        "`replicas` of kubernetes.scale); it never chooses what to act on",
    )

    def params(
        self, context: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
    ) -> ActionParams:
        """Render the `with:` templates, apply an agent's overrides of `agent_may_set`
        parameters, and validate (raises ValidationError, or ValueError for an override of a
        parameter the playbook does not let agents set)."""
        extra = dict(overrides or {})
        refused = sorted(set(extra) - set(self.agent_may_set))
        if refused:
            allowed = ", ".join(self.agent_may_set) or "none"
            raise ValueError(
                f"action {self.id} does not let agents set {', '.join(refused)} "
                f"(settable: {allowed})"
            )
        rendered = render(self.with_, context)
        return ACTIONS.get(self.uses).params.model_validate({**rendered, **extra})


def _step_models(typed: bool) -> list[type[ActionStepBase]]:
    """One model per action kind. Loading keeps `with:` raw (templates render at run time and
    are validated in `parse_playbook`); the JSON Schema shows each kind's typed parameters."""
    models = []
    for uses, kind in ACTIONS:
        fields: dict[str, Any] = {
            "uses": (Literal[uses], Field(description="The action kind")),
            "with_": (
                kind.params if typed else dict[str, Any],
                Field(default_factory=dict, alias="with", description="The action's parameters"),
            ),
        }
        models.append(
            create_model(f"Action_{uses.replace('.', '_')}", __base__=ActionStepBase, **fields)
        )
    return models


def _tagged(models: Iterable[type[BaseModel]], tag: str) -> Any:
    members = tuple(models)
    if len(members) == 1:
        return members[0]
    return Annotated[Union[members], Field(discriminator=tag)]  # noqa: UP007


class PlaybookBase(Model):
    name: str = Field(pattern=NAME, description="Unique name; part of every incident fingerprint")
    description: str = ""
    severity: Literal["info", "warning", "critical"] = "warning"
    diagnose: Diagnose = Field(default_factory=Diagnose)
    policy: Policy = Field(default_factory=Policy)
    escalate: Escalate = Field(default_factory=Escalate)
    causes: CausePatterns = Field(
        default_factory=dict,
        description="Your own cause patterns for this playbook: cause name → regexes",
    )
    inhibits: list[InhibitRule] = Field(
        default_factory=list,
        description="While an incident of this playbook is open, do not act on the incidents "
        "these rules match (a warehouse down, a namespace unavailable)",
    )

    @property
    def probe_config(self) -> ProbeConfig:
        return self.probe  # type: ignore[attr-defined]

    @property
    def steps(self) -> list[ActionStepBase]:
        return list(self.actions)  # type: ignore[attr-defined]

    def step(self, action_id: str) -> ActionStepBase | None:
        return next((s for s in self.steps if s.id == action_id), None)


@functools.cache
def playbook_model(typed_actions: bool = False) -> type[PlaybookBase]:
    """The Playbook model, built from the registered probe and action kinds."""
    step: Any = _tagged(_step_models(typed_actions), "uses")
    fields: dict[str, Any] = {
        "probe": (
            _tagged((k.config for _, k in PROBES), "kind"),
            Field(description="What to watch"),
        ),
        "actions": (
            list[step],
            Field(default_factory=list, description="The only actions an agent may choose"),
        ),
    }
    return create_model("Playbook", __base__=PlaybookBase, **fields)


@dataclass(frozen=True)
class LoadedPlaybook:
    playbook: PlaybookBase
    path: Path
    source: Source  # for file:line errors found after loading (e.g. an unknown source name)


def _template_problems(source: Source) -> list[str]:
    problems: list[str] = []

    def walk(value: Any, loc: Loc) -> None:
        if isinstance(value, str) and is_template(value):
            try:
                check_template(value)
            except TemplateProblem as exc:
                problems.append(source.problem(loc, str(exc)))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, (*loc, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*loc, index))

    for index, step in _raw_steps(source):
        walk(step.get("with"), ("actions", index, "with"))
    return problems


def _raw_steps(source: Source) -> list[tuple[int, Mapping[Any, Any]]]:
    """The `actions:` items that are mappings, before validation (the model reports the
    rest: `actions: -1`, an item that is a string)."""
    actions = source.data.get("actions") if isinstance(source.data, Mapping) else None
    if not isinstance(actions, list):
        return []
    return [(index, step) for index, step in enumerate(actions) if isinstance(step, Mapping)]


def _template_count(source: Source) -> int:
    """How many different templates `validate` would check: `when:` conditions and the
    template strings under `actions` and `probe`."""
    found: set[tuple[bool, str]] = set()
    todo: list[Any] = [source.data.get("probe")] if isinstance(source.data, Mapping) else []
    for _, step in _raw_steps(source):
        if isinstance(step.get("when"), str):
            found.add((False, step["when"]))
        todo.append(step.get("with"))
    while todo:
        value = todo.pop()
        if isinstance(value, Mapping):
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)
        elif is_template(value):
            found.add((True, value))
    return len(found)


def _is_template_input(error: Any) -> bool:
    """Templated `with:` values are checked after rendering, when the action runs."""
    return is_template(error.get("input"))


def _params_problems(source: Source) -> list[str]:
    problems = []
    for index, step in _raw_steps(source):
        uses = step.get("uses")
        if not isinstance(uses, str) or uses not in ACTIONS:
            continue  # reported by the playbook model
        params_model = ACTIONS.get(step["uses"]).params
        try:
            params_model.model_validate(step.get("with") or {})
        except ValidationError as exc:
            problems += validation_problems(
                source,
                params_model,
                exc,
                prefix=("actions", index, "with"),
                skip=_is_template_input,
            )
    return problems


def _agent_may_set_problems(source: Source, playbook: PlaybookBase) -> list[str]:
    problems = []
    for index, step in enumerate(playbook.steps):
        settable = ACTIONS.get(step.uses).params.agent_settable
        for j, name in enumerate(step.agent_may_set):
            if name not in settable:
                problems.append(
                    source.problem(
                        ("actions", index, "agent_may_set", j),
                        f"{step.uses} does not let agents set {name!r}"
                        f"{did_you_mean(name, settable)}; settable: "
                        f"{', '.join(sorted(settable)) or 'none'}",
                    )
                )
    return problems


def parse_playbook(source: Source) -> PlaybookBase:
    model = playbook_model()
    if not isinstance(source.data, Mapping):
        raise ConfigError([source.problem((), "a playbook is a mapping (name:, probe:, ...)")])
    templates = _template_count(source)
    if templates > MAX_TEMPLATES:
        raise ConfigError(
            [
                source.problem(
                    ("actions",),
                    f"{templates:,} different templates and conditions; at most "
                    f"{MAX_TEMPLATES:,} in one playbook (split it)",
                )
            ]
        )
    with checking():  # one deadline for the constant parts of all this file's templates
        problems = _template_problems(source) + _params_problems(source)
        try:
            playbook = model.model_validate(source.data)
        except ValidationError as exc:
            problems += validation_problems(source, model, exc)
            playbook = None
    if playbook is not None:
        problems += _agent_may_set_problems(source, playbook)
        seen: dict[str, int] = {}
        for index, step in enumerate(playbook.steps):
            if step.id == ESCALATE:
                problems.append(source.problem(("actions", index, "id"), "'escalate' is reserved"))
            if step.id in seen:
                problems.append(
                    source.problem(
                        ("actions", index, "id"),
                        f"duplicate action id {step.id!r} (also actions[{seen[step.id]}])",
                    )
                )
            seen.setdefault(step.id, index)
    if problems:
        raise ConfigError(sorted(problems, key=functools.partial(_line_number, source)))
    assert playbook is not None  # noqa: S101
    return playbook


def _line_number(source: Source, problem: str) -> int:
    """The line of a `file:line: field: message` about `source` (its path may hold colons)."""
    line = problem.removeprefix(f"{source.path}:").partition(":")[0]
    return int(line) if line.isdigit() else 0


def playbook_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            try:
                files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            except OSError as exc:
                raise ConfigError([f"{path}:0: (directory): cannot read: {exc.strerror}"]) from None
        else:
            files.append(path)
    return files


def load_playbooks(paths: Iterable[Path]) -> list[LoadedPlaybook]:
    """Load every playbook; raise one ConfigError listing every problem in every file."""
    problems: list[str] = []
    loaded: list[LoadedPlaybook] = []
    names: dict[str, Path] = {}
    files = playbook_files(paths)
    for path in files:
        try:
            source = read_yaml(path)
            playbook = parse_playbook(source)
        except ConfigError as exc:
            problems += exc.problems
            continue
        if playbook.name in names:
            problems.append(
                source.problem(
                    ("name",),
                    f"playbook name {playbook.name!r} is also used in {names[playbook.name]}",
                )
            )
            continue
        names[playbook.name] = path
        loaded.append(LoadedPlaybook(playbook, path, source))
    if problems:
        raise ConfigError(problems)
    return loaded


def playbook_json_schema() -> dict[str, Any]:
    """The JSON Schema of a playbook, accepting what `validate` accepts (short of checks a
    schema cannot express: templates compiling, bounds between fields, names in the config):
    a template string wherever `with:` takes a value (it is checked once rendered, when the
    action runs), and the old names of renamed fields."""
    schema = playbook_model(typed_actions=True).model_json_schema(
        by_alias=True, schema_generator=_OldNamesSchema
    )
    defs = schema.setdefault("$defs", {})
    for definition in list(defs.values()):
        properties = definition.get("properties", {})
        if properties.get("uses", {}).get("const") in ACTIONS:
            properties["with"] = _templatable(properties["with"], defs, wrap=False)
    _drop_unused(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "opsmedic playbook"
    return schema


class _OldNamesSchema(GenerateJsonSchema):
    """Also lists a field's other names (`AliasChoices`, e.g. policy.dry_run for shadow),
    marked deprecated."""

    def model_fields_schema(self, schema: core_schema.ModelFieldsSchema) -> JsonSchemaValue:
        json_schema = super().model_fields_schema(schema)
        properties = json_schema.get("properties", {})
        for field in schema["fields"].values():
            choices = field.get("validation_alias")
            if not isinstance(choices, list):
                continue
            names = [c[0] for c in choices if isinstance(c, list) and len(c) == 1]
            names = [n for n in names if isinstance(n, str)]
            if len(names) < 2 or names[0] not in properties:
                continue
            for old in names[1:]:
                properties.setdefault(
                    old,
                    {
                        **properties[names[0]],
                        "deprecated": True,
                        "description": f"The old name of `{names[0]}`",
                    },
                )
        return json_schema


_TEMPLATE_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"\{\{|\{%",
    "description": "A Jinja template, rendered when the action runs",
}
_META = ("title", "description", "default", "examples", "deprecated")


def _templatable(schema: Any, defs: dict[str, Any], *, wrap: bool = True) -> Any:
    """`schema`, also accepting a template string for any value inside it (and, with
    `wrap`, for itself). Referenced definitions are copied (`<name>Templated`), not changed:
    outside `with:` they take no templates."""
    if not isinstance(schema, dict):
        return schema
    inner = dict(schema)
    ref = inner.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        copy = f"{name}Templated"
        if copy not in defs:
            defs[copy] = {}  # reserved first: a recursive definition refers to itself
            defs[copy] = _templatable(defs[name], defs, wrap=False)
        inner["$ref"] = f"#/$defs/{copy}"
    for key in ("items", "additionalProperties"):
        if isinstance(inner.get(key), dict):
            inner[key] = _templatable(inner[key], defs)
    if isinstance(inner.get("prefixItems"), list):
        inner["prefixItems"] = [_templatable(s, defs) for s in inner["prefixItems"]]
    if isinstance(inner.get("properties"), dict):
        inner["properties"] = {k: _templatable(v, defs) for k, v in inner["properties"].items()}
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(inner.get(key), list):
            inner[key] = [_templatable(s, defs, wrap=False) for s in inner[key]]
    if not wrap:
        return inner
    meta = {k: inner.pop(k) for k in _META if k in inner}
    choices = inner["anyOf"] if list(inner) == ["anyOf"] else [inner]
    return {**meta, "anyOf": [*choices, _TEMPLATE_SCHEMA]}


def _drop_unused(schema: dict[str, Any]) -> None:
    """Remove definitions nothing refers to any more."""
    defs = schema.get("$defs", {})
    used: set[str] = set()
    todo: list[Any] = [{k: v for k, v in schema.items() if k != "$defs"}]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name not in used and name in defs:
                    used.add(name)
                    todo.append(defs[name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    for name in [n for n in defs if n not in used]:
        del defs[name]
