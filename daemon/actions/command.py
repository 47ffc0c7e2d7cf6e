"""`command` action: run a program (argv list, no shell unless `shell: true`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import tempfile
from pathlib import Path

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


# Runs the child with its output in a file (not a pipe, so it survives the daemon's death)
# and leaves its pid and, once it ends, its exit status beside it, each written atomically.
WRAPPER = """R=$1; shift
echo $$ > "$R/pid.tmp" && mv "$R/pid.tmp" "$R/pid"
"$@" > "$R/output" 2>&1 < /dev/null
code=$?
echo $code > "$R/status.tmp" && mv "$R/status.tmp" "$R/status"
exit $code
"""
POLL = 0.5  # how often a reconciled command still running is looked at


class CommandAction:
    """Run a program in its own session, through a wrapper that records its pid, output and
    exit status under the daemon's records (one folder per attempt). A daemon that restarts
    after a crash reads that record: the command still runs → wait for it within its timeout;
    it finished → its exit status; it never started → it did not run."""

    async def run(self, params: CommandParams, context: ActionContext) -> ActionResult:
        env = (dict(os.environ) if params.inherit_env else {}) | params.env
        env |= {
            "OPSMEDIC_INCIDENT_ID": str(context.incident_id),
            "OPSMEDIC_ATTEMPT": str(context.attempt),
            "OPSMEDIC_IDEMPOTENCY_KEY": context.idempotency_key,
        }
        argv = ["/bin/sh", "-c", params.command or ""] if params.shell else list(params.argv or [])
        program = Path(params.cwd or ".", argv[0]) if "/" in argv[0] else None
        found = (
            os.access(program, os.X_OK) and program.is_file()
            if program is not None
            else shutil.which(argv[0], path=env.get("PATH", os.defpath)) is not None
        )
        if not found:
            raise PermanentError(f"cannot start command: {argv[0]}: no such executable")
        record = _record(context)
        shutil.rmtree(record, ignore_errors=True)  # a retry of this attempt starts afresh
        record.mkdir(parents=True)
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                WRAPPER,
                "opsmedic-command",
                str(record),
                *argv,
                start_new_session=True,
                env=env,
                cwd=params.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise PermanentError(f"cannot start command: {exc}") from exc
        try:
            await asyncio.wait_for(proc.wait(), timeout=params.timeout)
        except TimeoutError:
            _kill(proc.pid)
            await proc.wait()
            return _timed_out(params, record)
        return _finished(params, record)

    async def reconcile(self, params: CommandParams, context: ActionContext) -> ActionResult | None:
        record = _record(context)
        pid = _read_int(record / "pid")
        if pid is None:
            return None  # the wrapper never started: the command did not run
        started = context.started_at if context.started_at is not None else context.clock.now()
        while not (record / "status").exists() and _alive(pid, record):
            if context.clock.now() >= started + params.timeout:
                _kill(pid)
                return _timed_out(params, record)
            await context.clock.sleep(POLL)
        if (record / "status").exists():
            return _finished(params, record)
        raise PermanentError(
            f"the command (pid {pid}) ended without recording its exit status; its outcome "
            "is unknown"
        )


def _record(context: ActionContext) -> Path:
    """This attempt's record: under the daemon's records, or (outside a daemon) a private
    temporary folder of this process."""
    return (context.records or _scratch()) / "command" / context.idempotency_key


@functools.cache
def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="opsmedic-"))


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int, record: Path) -> bool:
    """Is our wrapper still running? (Its command line names the record, so a reused pid of
    another process does not count.)"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(record).encode() in cmdline


def _kill(pid: int) -> None:
    # the wrapper leads its own process group: kill it all, not just the shell
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _tail(record: Path) -> str:
    try:
        with (record / "output").open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - OUTPUT_TAIL * 4))
            return f.read().decode("utf-8", errors="replace")[-OUTPUT_TAIL:]
    except OSError:
        return ""


def _timed_out(params: CommandParams, record: Path) -> ActionResult:
    return ActionResult(
        ok=False,
        message=f"killed after timeout {params.timeout:g}s",
        data={"exit_code": None, "timed_out": True, "output": _tail(record)},
    )


def _finished(params: CommandParams, record: Path) -> ActionResult:
    code = _read_int(record / "status")
    tail = _tail(record)
    if code in params.retry_exit_codes:
        raise TemporaryError(f"command exited {code} (listed as transient): {tail.strip()}")
    return ActionResult(
        ok=code == 0, message=f"exit code {code}", data={"exit_code": code, "output": tail}
    )


ACTIONS.register("command", ActionKind(CommandParams, CommandAction, RERUN))
