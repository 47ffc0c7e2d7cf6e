"""Daemon settings (opsmedic.yaml). Every field has a default: no file is needed to start."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daemon.durations import Duration
from daemon.errors import ConfigError
from daemon.kube.cluster import KubernetesCluster
from daemon.playbook import LoadedPlaybook
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

    def resolved(self, base: Path) -> Settings:
        """Relative paths are relative to the config file's directory."""
        return self.model_copy(
            update={
                "playbooks": [base / p for p in self.playbooks],
                "database": base / self.database,
            }
        )

    def source_problems(self, playbooks: Sequence[LoadedPlaybook]) -> list[str]:
        """Playbooks naming a Prometheus source or Kubernetes cluster this config lacks."""
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

        for lp in playbooks:
            probe = lp.playbook.probe_config
            check(lp, ("probe", "source"), getattr(probe, "source", None), "Prometheus source")
            check(lp, ("probe", "cluster"), getattr(probe, "cluster", None), "Kubernetes cluster")
            for i, step in enumerate(lp.playbook.steps):
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
    return settings.resolved(path.parent)
