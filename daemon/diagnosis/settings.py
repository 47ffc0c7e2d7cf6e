"""`diagnosis:` in the daemon config, and the `causes:` patterns a config or playbook adds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from daemon.diagnosis.history import HistoryLimits
from daemon.durations import Duration

CAUSE_NAME = r"^[a-z][a-z0-9_]*$"


def _compiles(patterns: dict[str, list[str]]) -> dict[str, list[str]]:
    for name, rows in patterns.items():
        if not re.fullmatch(CAUSE_NAME, name):
            raise ValueError(f"cause name {name!r}: use lower_snake_case ({CAUSE_NAME})")
        for pattern in rows:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"{name}: pattern {pattern!r} is not a valid regex: {exc}"
                ) from None
    return patterns


CausePatterns = Annotated[dict[str, list[str]], AfterValidator(_compiles)]
"""cause name → case-insensitive regular expressions matched against log lines, Warning events
and error text. A built-in name adds patterns to that cause; a new name defines a cause that
no action kind can help (the rules escalate unless an action's `when` holds or it opts out)."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Flapping(Section):
    actions: int = Field(3, ge=1, description="This many actions on one target within the window…")
    window: Duration = Field(3600.0, description="…make the next one `flapping`: escalate instead")


class DiagnosisSettings(Section):
    flapping: Flapping = Field(default_factory=Flapping)
    did_not_stick: Duration = Field(
        6 * 3600.0, description="An action that healed the target this recently did not stick"
    )
    repeated_failure: Duration = Field(
        24 * 3600.0,
        description="An action that did not heal the target's failure this recent will not now",
    )
    fresh_release: Duration = Field(
        3600.0, description="A breach this soon after an image change blames the release"
    )
    causes: CausePatterns = Field(
        default_factory=dict, description="Your own patterns: cause name → regexes"
    )

    @property
    def history_window(self) -> float:
        """How far back the history causes look."""
        return max(self.flapping.window, self.did_not_stick, self.repeated_failure)

    def history_limits(self) -> HistoryLimits:
        return HistoryLimits(
            flap_actions=self.flapping.actions,
            flap_window=self.flapping.window,
            stick_window=self.did_not_stick,
            repeat_window=self.repeated_failure,
        )
