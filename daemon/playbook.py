"""The playbook model (the user-facing YAML contract) and its loader with file:line errors."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from daemon.actions import ACTIONS, ActionParams
from daemon.diagnosis import CausePatterns
from daemon.durations import Duration
from daemon.errors import ConfigError
from daemon.registry import did_you_mean
from daemon.templating import (
    TemplateProblem,
    check_expression,
    check_template,
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
    dry_run: bool = Field(False, description="Decide and log 'would run', never act")
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

    for index, step in enumerate((source.data or {}).get("actions") or []):
        if isinstance(step, Mapping):
            walk(step.get("with"), ("actions", index, "with"))
    return problems


def _is_template_input(error: Any) -> bool:
    """Templated `with:` values are checked after rendering, when the action runs."""
    return is_template(error.get("input"))


def _params_problems(source: Source) -> list[str]:
    problems = []
    for index, step in enumerate((source.data or {}).get("actions") or []):
        if not isinstance(step, Mapping) or step.get("uses") not in ACTIONS:
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
        raise ConfigError(sorted(problems, key=_line_number))
    assert playbook is not None  # noqa: S101
    return playbook


def _line_number(problem: str) -> int:
    return int(problem.split(":")[1])


def playbook_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
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
    schema = playbook_model(typed_actions=True).model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "opsmedic playbook"
    return schema
