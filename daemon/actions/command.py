"""`command` action: run a program (argv list, no shell unless `shell: true`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from pydantic import Field, model_validator

from daemon.actions.base import ACTIONS, ActionContext, ActionKind, ActionParams, ActionResult
from daemon.diagnosis.causes import RERUN
from daemon.durations import Duration
from daemon.errors import PermanentError, TemporaryError

OUTPUT_TAIL = 2000


class CommandParams(ActionParams):
    argv: list[str] | None = Field(None, min_length=1, description="Program and arguments")
    command: str | None = Field(None, description="A shell command line; needs `shell: true`")
    shell: bool = Field(False, description="Run `command` through /bin/sh")
    timeout: Duration = Field(300.0, description="Kill the command after this long")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables")
    inherit_env: bool = Field(True, description="Start from the daemon's environment")
    cwd: str | None = None
    retry_exit_codes: list[int] = Field(
        default_factory=list, description="Exit codes that mean 'transient, try again'"
    )

    @model_validator(mode="after")
    def _argv_or_shell(self) -> CommandParams:
        if self.shell and (self.command is None or self.argv is not None):
            raise ValueError("with `shell: true`, give `command` (a string) and no `argv`")
        if not self.shell and (self.argv is None or self.command is not None):
            raise ValueError("give `argv` (a list); `command` strings need `shell: true`")
        return self


class CommandAction:
    async def run(self, params: CommandParams, context: ActionContext) -> ActionResult:
        env = (dict(os.environ) if params.inherit_env else {}) | params.env
        env |= {
            "OPSMEDIC_INCIDENT_ID": str(context.incident_id),
            "OPSMEDIC_ATTEMPT": str(context.attempt),
            "OPSMEDIC_IDEMPOTENCY_KEY": context.idempotency_key,
        }
        try:
            if params.shell:
                assert params.command is not None  # noqa: S101 - validated
                proc = await asyncio.create_subprocess_shell(
                    params.command,
                    start_new_session=True,
                    env=env,
                    cwd=params.cwd,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
            else:
                assert params.argv is not None  # noqa: S101 - validated
                proc = await asyncio.create_subprocess_exec(
                    *params.argv,
                    start_new_session=True,
                    env=env,
                    cwd=params.cwd,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
        except OSError as exc:
            raise PermanentError(f"cannot start command: {exc}") from exc
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), timeout=params.timeout)
        except TimeoutError:
            # the child leads its own process group: kill it all, not just a shell
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            return ActionResult(ok=False, message=f"killed after timeout {params.timeout:g}s")
        tail = output.decode("utf-8", errors="replace")[-OUTPUT_TAIL:]
        code = proc.returncode
        if code in params.retry_exit_codes:
            raise TemporaryError(f"command exited {code} (listed as transient): {tail.strip()}")
        return ActionResult(
            ok=code == 0,
            message=f"exit code {code}",
            data={"exit_code": code, "output": tail},
        )


ACTIONS.register("command", ActionKind(CommandParams, CommandAction, RERUN))
