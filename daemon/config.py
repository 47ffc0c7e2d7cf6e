"""Daemon settings (opsmedic.yaml). Every field has a default: no file is needed to start."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daemon.agents import AGENTS
from daemon.agents.settings import AgentSettings, LLMSettings, reference_problems
from daemon.diagnosis import CAUSES, DiagnosisSettings
from daemon.durations import Duration
from daemon.errors import ConfigError, PermanentError
from daemon.kube.cluster import KubernetesCluster
from daemon.playbook import LoadedPlaybook
from daemon.redact import Redactor
from daemon.registry import did_you_mean
from daemon.templating import is_template
from daemon.yamlsource import read_yaml, validation_problems
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
    dry_run: bool = Field(False, description="Force dry-run on every playbook")
    jitter: Duration = Field(1.0, description="Random delay added to each probe run")
    probe_retries: int = Field(2, ge=0, le=10, description="Retries of a temporary probe error")
    shutdown_grace: Duration = Field(
        30.0, description="On SIGTERM, how long in-flight steps may take before being cut"
    )
    notify: NotifySettings = Field(default_factory=NotifySettings)
    prometheus: dict[str, PrometheusSource] = Field(
        default_factory=lambda: {"default": PrometheusSource()},
        description="Prometheus servers by name; probes pick one with `source` (default)",
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
    diagnosis: DiagnosisSettings = Field(
        default_factory=DiagnosisSettings,
        description="How causes are found: history windows and your own cause patterns",
    )

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
        agents = {
            name: a.model_copy(update={"api_key_file": base / a.api_key_file})
            if a.api_key_file
            else a
            for name, a in self.agents.items()
        }
        files = [base / p for p in self.redact.secret_files]
        return self.model_copy(
            update={
                "playbooks": [base / p for p in self.playbooks],
                "database": base / self.database,
                "agents": agents,
                "redact": self.redact.model_copy(update={"secret_files": files}),
            }
        )

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


def find_config(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    env = os.environ.get("OPSMEDIC_CONFIG")
    if env:
        return Path(env)
    return next((p for p in DEFAULT_PATHS if p.exists()), None)


def load_settings(path: Path | None) -> Settings:
    if path is None:
        return Settings()
    source = read_yaml(path)
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([source.problem((), "the config file is a mapping of settings")])
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(source, Settings, exc)) from None
    problems = [
        source.problem(loc, msg) for loc, msg in reference_problems(settings.agents, settings.llm)
    ]
    if problems:
        raise ConfigError(problems)
    return settings.resolved(path.parent)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([f"redact.secret_files: cannot read {path}: {exc.strerror}"]) from None


def _bearer(source: PrometheusSource) -> str:
    return source.request_headers().get("Authorization", "").removeprefix("Bearer ")
