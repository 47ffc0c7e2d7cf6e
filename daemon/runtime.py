"""A loaded playbook with its live parts: probe instance and detector."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from daemon.detector import Detector
from daemon.notify.base import Route
from daemon.playbook import PlaybookBase
from probes.base import PROBES, Probe, ProbeContext


@dataclass(frozen=True)
class PlaybookRuntime:
    playbook: PlaybookBase
    path: Path
    probe: Probe
    detector: Detector

    @classmethod
    def build(cls, playbook: PlaybookBase, path: Path, context: ProbeContext) -> PlaybookRuntime:
        config = playbook.probe_config
        probe = PROBES.get(config.kind).create(config, context)
        detector = Detector(
            playbook.name,
            for_=config.for_,
            keep_firing_for=config.keep_firing_for,
            no_data=config.no_data,
        )
        return cls(playbook=playbook, path=path, probe=probe, detector=detector)

    @property
    def route(self) -> Route:
        slack = self.playbook.escalate.slack
        return Route(slack_channel=slack.channel, slack_mention=slack.mention)
