"""Daemon settings (opsmedic.yaml). Every field has a default: no file is needed to start.

`load_config` keeps the parsed YAML (`Source`) beside the settings, so that
`Settings.startup_problems` can name the file and line of what `run` would trip over at
start-up: `validate` and `run` both call it, so what validate passes, run starts with.
`playbook_query_report` adds what only validate checks: PromQL syntax and verify windows."""

from __future__ import annotations

import dataclasses
import functools
import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from daemon.agents import AGENTS
from daemon.agents.settings import AgentSettings, LLMSettings, reference_problems
from daemon.diagnosis import CAUSES, DiagnosisSettings
from daemon.durations import Duration, format_duration
from daemon.errors import ConfigError, PermanentError
from daemon.guard import SafetySettings
from daemon.kube.cluster import KubernetesCluster
from daemon.playbook import LoadedPlaybook
from daemon.redact import Redactor
from daemon.registry import did_you_mean
from daemon.templating import is_template
from daemon.yamlsource import Loc, Source, format_loc, read_yaml, validation_problems
from probes.prometheus import check_promql, promql_fields, range_windows
from probes.prometheus_source import PrometheusSource

DEFAULT_PATHS = (Path("opsmedic.yaml"), Path("/etc/opsmedic/opsmedic.yaml"))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackSettings(Section):
    token_env: str = Field("SLACK_BOT_TOKEN", description="Env variable holding the bot token")
    token_file: Path | None = Field(None, description="File holding the bot token (wins)")
    channel: str | None = Field(None, description="Default channel for escalations")
    base_url: str | None = Field(None, description="Slack Web API base URL (ends with /api/)")
    timeout: Duration = 10.0

    def token(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text(encoding="utf-8").strip() or None
        return os.environ.get(self.token_env) or None


class NotifySettings(Section):
    console: bool = Field(True, description="Print every incident event on stdout")
    slack: SlackSettings = Field(default_factory=SlackSettings)


class RedactSettings(Section):
    secrets_env: list[str] = Field(
        default_factory=list,
        description="Env variables whose values are secrets: redacted from LLM prompts, Slack, "
        "logs and the incident log (API keys and tokens from this config are always included)",
    )
    secret_files: list[Path] = Field(
        default_factory=list, description="Files whose contents are secrets (one per file)"
    )
    emails: bool = Field(False, description="Also redact e-mail addresses")
    ips: bool = Field(False, description="Also redact IPv4 addresses")


class Settings(Section):
    playbooks: list[Path] = Field(
        default_factory=lambda: [Path("playbooks")], description="Playbook files or directories"
    )
    database: Path = Field(Path("opsmedic.db"), description="SQLite incident log")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    dry_run: bool = Field(
        False, description="Old name of safety.shadow: shadow mode on every playbook"
    )
    jitter: Duration = Field(1.0, description="Random delay added to each probe run")
    probe_retries: int = Field(2, ge=0, le=10, description="Retries of a temporary probe error")
    shutdown_grace: Duration = Field(
        30.0, description="On SIGTERM, how long in-flight steps may take before being cut"
    )
    notify: NotifySettings = Field(default_factory=NotifySettings)
    prometheus: dict[str, PrometheusSource] = Field(
        default_factory=lambda: {"default": PrometheusSource()},
        description="Prometheus servers by name; probes pick one with `source` (default). "
        "One server may be written without a name, `prometheus: {url: ...}`: it is the source "
        "`default`",
        json_schema_extra=lambda schema: _one_source_schema(schema),
    )

    kubernetes: dict[str, KubernetesCluster] = Field(
        default_factory=lambda: {"default": KubernetesCluster()},
        description="Kubernetes clusters by name; probes and actions pick one with `cluster`",
    )
    agents: dict[str, AgentSettings] = Field(
        default_factory=dict,
        description="LLM agents by name; playbooks pick one with `diagnose.agent`",
    )
    llm: LLMSettings = Field(default_factory=LLMSettings)
    redact: RedactSettings = Field(default_factory=RedactSettings)
    safety: SafetySettings = Field(
        default_factory=SafetySettings,
        description="Guard rails: shadow mode, pause, blast radius, rate limit, flap guard, "
        "silences",
    )
    diagnosis: DiagnosisSettings = Field(
        default_factory=DiagnosisSettings,
        description="How causes are found: history windows and your own cause patterns",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_prometheus(cls, data: Any) -> Any:
        """`prometheus: {url: ...}` is shorthand for `prometheus: {default: {url: ...}}`."""
        if isinstance(data, Mapping) and _is_one_source(data.get("prometheus")):
            return {**data, "prometheus": {"default": data["prometheus"]}}
        return data

    def redactor(self) -> Redactor:
        """Configured secret values, plus every credential this config points to. A
        credential that cannot be read is skipped here; its user reports the error."""
        getters: list[Callable[[], str | None]] = [
            *(functools.partial(os.environ.get, name) for name in self.redact.secrets_env),
            *(a.api_key for a in self.agents.values()),
            self.notify.slack.token,
            *(c.token for c in self.kubernetes.values()),
        ]
        for source in self.prometheus.values():
            getters.append(functools.partial(_bearer, source))
            if source.basic_auth is not None:
                getters.append(source.basic_auth.password)
        values = [_read(p) for p in self.redact.secret_files]  # these must be readable
        for get in getters:
            try:
                values.append((get() or "").strip())
            except (OSError, PermanentError):
                continue
        return Redactor(
            secrets=tuple(v for v in values if v), emails=self.redact.emails, ips=self.redact.ips
        )

    def resolved(self, base: Path) -> Settings:
        """Relative paths are relative to the config file's directory."""
        agents = {name: _rebased(a, base, "api_key_file") for name, a in self.agents.items()}
        prometheus = {}
        for name, src in self.prometheus.items():
            src = _rebased(src, base, "bearer_token_file", "ca_file")
            if src.basic_auth is not None:
                auth = _rebased(src.basic_auth, base, "password_file")
                src = src.model_copy(update={"basic_auth": auth})
            prometheus[name] = src
        kubernetes = {
            name: _rebased(c, base, "kubeconfig", "token_file", "ca_file")
            for name, c in self.kubernetes.items()
        }
        slack = _rebased(self.notify.slack, base, "token_file")
        files = [base / p for p in self.redact.secret_files]
        return self.model_copy(
            update={
                "playbooks": [base / p for p in self.playbooks],
                "database": base / self.database,
                "agents": agents,
                "prometheus": prometheus,
                "kubernetes": kubernetes,
                "notify": self.notify.model_copy(update={"slack": slack}),
                "redact": self.redact.model_copy(update={"secret_files": files}),
            }
        )

    def startup_problems(self, source: Source | None, *, store: bool = True) -> list[str]:
        """What `run` needs at start-up, as `file:line: field: message` (`source` is the
        config file's, None without one): every file it reads (tokens, keys, passwords, CA
        bundles, kubeconfigs, redact.secret_files) readable and, for secrets, not empty;
        every env variable it is told to read a credential from set; Prometheus URLs with
        an http(s) scheme and a host; and, with `store`, the incident log creatable and
        writable. It reads those files but creates nothing. `validate` and `run` both call
        it, so what validate passes, run starts with."""
        found: list[tuple[Loc, str]] = []

        def readable(loc: Loc, path: Path, what: str, *, secret: bool = True) -> None:
            problem = _unreadable(path, secret=secret)
            if problem is not None:
                found.append((loc, f"cannot read {what} {path}: {problem}"))

        def env(loc: Loc, name: str, what: str) -> None:
            if not os.environ.get(name, "").strip():
                found.append((loc, f"${name} is not set (or is empty); {what} is read from it"))

        if store:
            problem = _database_problem(self.database)
            if problem is not None:
                found.append((("database",), problem))
        slack = self.notify.slack
        if slack.token_file is not None:
            readable(("notify", "slack", "token_file"), slack.token_file, "the Slack token file")
        for name, src in self.prometheus.items():
            at: Loc = ("prometheus", name)
            problem = _url_problem(src.url)
            if problem is not None:
                found.append(((*at, "url"), problem))
            if src.bearer_token_file is not None:
                readable((*at, "bearer_token_file"), src.bearer_token_file, "bearer_token_file")
            elif src.bearer_token_env is not None:
                env((*at, "bearer_token_env"), src.bearer_token_env, "the bearer token")
            auth = src.basic_auth
            if auth is not None and auth.password_file is not None:
                where = (*at, "basic_auth", "password_file")
                readable(where, auth.password_file, "password_file")
            elif auth is not None and auth.password_env is not None:
                env((*at, "basic_auth", "password_env"), auth.password_env, "the password")
            if src.ca_file is not None and src.tls_verify:
                readable((*at, "ca_file"), src.ca_file, "ca_file", secret=False)
        for name, cluster in self.kubernetes.items():
            at = ("kubernetes", name)
            if cluster.kubeconfig is not None:
                readable((*at, "kubeconfig"), cluster.kubeconfig, "kubeconfig", secret=False)
            if cluster.token_file is not None:
                readable((*at, "token_file"), cluster.token_file, "token_file")
            elif cluster.token_env is not None:
                env((*at, "token_env"), cluster.token_env, "the bearer token")
            if cluster.ca_file is not None:
                readable((*at, "ca_file"), cluster.ca_file, "ca_file", secret=False)
        for name, agent in self.agents.items():
            at = ("agents", name)
            if agent.api_key_file is not None:
                readable((*at, "api_key_file"), agent.api_key_file, "api_key_file")
            elif agent.api_key_env is not None:
                env((*at, "api_key_env"), agent.api_key_env, "the API key")
        for index, path in enumerate(self.redact.secret_files):
            where = ("redact", "secret_files", index)
            readable(where, path, "redact.secret_files entry", secret=False)
        if source is not None:
            found.sort(key=lambda problem: source.line_of(problem[0]))
        return [_problem(source, loc, message) for loc, message in found]

    def source_problems(self, playbooks: Sequence[LoadedPlaybook]) -> list[str]:
        """Playbooks naming an agent, Prometheus source or Kubernetes cluster this config lacks."""
        problems = []

        def check(lp: LoadedPlaybook, path: tuple[str | int, ...], name: Any, kind: str) -> None:
            known = list(self.prometheus if kind == "Prometheus source" else self.kubernetes)
            if isinstance(name, str) and not is_template(name) and name not in known:
                problems.append(
                    lp.source.problem(
                        path,
                        f"unknown {kind} {name!r}{did_you_mean(name, known)}; "
                        f"the config defines: {', '.join(sorted(known)) or 'none'}",
                    )
                )

        agents = ["auto", "rules", *self.agents, *AGENTS.names()]
        for lp in playbooks:
            agent = lp.playbook.diagnose.agent
            if agent not in agents:
                problems.append(
                    lp.source.problem(
                        ("diagnose", "agent"),
                        f"unknown agent {agent!r}{did_you_mean(agent, agents)}; "
                        f"the config defines: {', '.join(sorted(self.agents)) or 'none'} "
                        "(besides rules and auto)",
                    )
                )
            probe = lp.playbook.probe_config
            check(lp, ("probe", "source"), getattr(probe, "source", None), "Prometheus source")
            check(lp, ("probe", "cluster"), getattr(probe, "cluster", None), "Kubernetes cluster")
            causes = {*CAUSES, *self.diagnosis.causes, *lp.playbook.causes}
            for i, step in enumerate(lp.playbook.steps):
                ignored = step.ignore_causes if isinstance(step.ignore_causes, list) else []
                for j, name in enumerate(ignored):
                    if name not in causes:
                        problems.append(
                            lp.source.problem(
                                ("actions", i, "ignore_causes", j),
                                f"unknown cause {name!r}{did_you_mean(name, causes)}",
                            )
                        )
                if step.uses.startswith("kubernetes."):
                    name = step.with_.get("cluster", "default")
                    check(lp, ("actions", i, "with", "cluster"), name, "Kubernetes cluster")
        return problems


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueryReport:
    """What validate finds in the playbooks' PromQL, as `file:line: field: message`:
    invalid queries (problems), a `verify_after` shorter than a range window the probe reads
    (warnings), and how the queries were checked when promtool could not do it (note)."""

    problems: list[str]
    warnings: list[str]
    note: str | None = None


def playbook_query_report(
    playbooks: Sequence[LoadedPlaybook], *, promtool: str | None = None
) -> QueryReport:
    """Check every PromQL query of the playbooks' probes (evidence included) at once, with
    promtool when it is on PATH; warn where verification would re-read stale data."""
    queries: list[tuple[LoadedPlaybook, Loc, str]] = []
    warnings = []
    for lp in playbooks:
        probe = lp.playbook.probe_config
        queries += [(lp, ("probe", *loc), query) for loc, query in promql_fields(probe)]
        windows = [
            (seconds, text, loc)
            for loc, query in promql_fields(probe, evidence=False)
            for text, seconds in range_windows(query)
        ]
        verify_after = lp.playbook.policy.verify_after
        widest = max(windows, key=lambda window: window[0], default=None)
        if widest is not None and widest[0] > verify_after:
            _, text, loc = widest
            given = ("policy", "verify_after") in lp.source.lines
            warnings.append(
                lp.source.problem(
                    ("policy", "verify_after"),
                    f"warning: {format_duration(verify_after)}{'' if given else ' (default)'} "
                    f"is shorter than the range window [{text}] of "
                    f"{format_loc(('probe', *loc))}: verification would judge data mostly from "
                    f"before the action; set verify_after: {text} or more",
                )
            )
    check = check_promql([query for _, _, query in queries], promtool=promtool)
    order = {id(lp): n for n, lp in enumerate(playbooks)}
    found = sorted(
        (order[id(lp)], lp.source.line_of(loc), lp.source.problem(loc, message))
        for (lp, loc, _), message in ((queries[i], m) for i, m in check.problems.items())
    )
    problems = [problem for _, _, problem in found]
    return QueryReport(problems=problems, warnings=warnings, note=check.note)


def find_config(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    env = os.environ.get("OPSMEDIC_CONFIG")
    if env:
        return Path(env)
    return next((p for p in DEFAULT_PATHS if p.exists()), None)


def load_settings(path: Path | None) -> Settings:
    return load_config(path)[0]


def load_config(path: Path | None) -> tuple[Settings, Source | None]:
    """The settings, with relative paths resolved, and the parsed file for file:line
    problems found later (`startup_problems`); no file: the defaults and None."""
    if path is None:
        return Settings(), None
    source = read_yaml(path)
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([source.problem((), "the config file is a mapping of settings")])
    if _is_one_source(data.get("prometheus")):
        source = _one_source_lines(source)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(source, Settings, exc)) from None
    problems = [
        source.problem(loc, msg) for loc, msg in reference_problems(settings.agents, settings.llm)
    ]
    if problems:
        raise ConfigError(problems)
    return settings.resolved(path.parent), source


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([f"redact.secret_files: cannot read {path}: {exc.strerror}"]) from None


def _bearer(source: PrometheusSource) -> str:
    return source.request_headers().get("Authorization", "").removeprefix("Bearer ")


def _rebased(model: Any, base: Path, *fields: str) -> Any:
    """A copy of `model` whose relative path `fields` are relative to `base`."""
    update = {}
    for name in fields:
        value = getattr(model, name)
        if value is not None and not value.is_absolute():
            update[name] = base / value
    return model.model_copy(update=update) if update else model


def _is_one_source(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("url"), str)


def _one_source_lines(source: Source) -> Source:
    """Lines of the shorthand `prometheus: {url: ...}` also under `prometheus.default`."""
    lines = dict(source.lines)
    for loc, line in source.lines.items():
        if loc[:1] == ("prometheus",):
            lines[("prometheus", "default", *loc[1:])] = line
    return dataclasses.replace(source, lines=lines)


def _one_source_schema(schema: dict[str, Any]) -> None:
    """The JSON Schema of `prometheus:` also accepts the one-source shorthand."""
    one = schema.get("additionalProperties")
    if isinstance(one, dict):
        mapping = {k: schema.pop(k) for k in ("type", "additionalProperties") if k in schema}
        schema["anyOf"] = [mapping, one]


def _problem(source: Source | None, loc: Loc, message: str) -> str:
    if source is not None:
        return source.problem(loc, message)
    return f"(default settings, no config file): {format_loc(loc)}: {message}"


def _unreadable(path: Path, *, secret: bool) -> str | None:
    """Why `path` cannot be read (None if it can); an empty secret file counts."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return exc.strerror or str(exc)
    except UnicodeDecodeError:
        return "not UTF-8 text" if secret else None
    if secret and not text.strip():
        return "the file is empty"
    return None


def _database_problem(database: Path) -> str | None:
    """Why the incident log cannot be opened for writing at start-up, checked without
    creating it or its directory: an existing log must be a writable file; the directory it
    is (or would be created) in must be a writable directory."""
    try:
        if database.is_dir():
            return f"{database} is a directory, not an incident log file"
        if database.exists():
            if not os.access(database, os.R_OK | os.W_OK):
                return f"cannot write the incident log {database}: permission denied"
            directory = database.parent
        else:
            directory = database.parent
            while not directory.exists() and directory != directory.parent:
                directory = directory.parent
            if not directory.is_dir():
                return (
                    f"cannot create the incident log {database}: {directory} is a file, "
                    "not a directory"
                )
    except OSError as exc:
        return f"cannot reach the incident log {database}: {exc.strerror or exc}"
    if not os.access(directory, os.W_OK | os.X_OK):
        verb = "write" if database.exists() else "create"
        return f"cannot {verb} the incident log {database}: directory {directory} is not writable"
    return None


def _url_problem(url: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return f"malformed URL {url!r}: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"malformed URL {url!r}: the scheme must be http or https"
    if not parts.hostname:
        return f"malformed URL {url!r}: no host"
    return None
