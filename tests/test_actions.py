"""Action kinds: real subprocesses, real loopback HTTP servers, retries on a fake clock."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from daemon.actions.backoff import BackoffAction, BackoffParams
from daemon.actions.base import ActionContext, ActionResult, run_with_retries
from daemon.actions.command import CommandAction, CommandParams
from daemon.actions.http import HttpAction, HttpParams
from daemon.clock import FakeClock, settle
from daemon.errors import PermanentError, TemporaryError
from daemon.sandbox.web import ToyWebService
from tests.fakes.http import ScriptedServer

PY = sys.executable


@pytest.fixture
def recorder() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


def context(
    clock: FakeClock, *, incident_id: int = 7, attempt: int = 2, **kw: Any
) -> ActionContext:
    kw.setdefault("action_attempt", 1)
    return ActionContext(incident_id=incident_id, attempt=attempt, clock=clock, **kw)


def command(**params: Any) -> CommandParams:
    return CommandParams.model_validate(params)


def shell(line: str, **params: Any) -> CommandParams:
    return CommandParams.model_validate({"shell": True, "command": line, **params})


async def drive(clock: FakeClock, task: asyncio.Task[Any], *, timeout: float = 10) -> Any:
    """Run `task` to the end, jumping the fake clock whenever it waits on it."""
    deadline = time.monotonic() + timeout
    while not task.done():
        assert time.monotonic() < deadline, "task never finished"
        if clock.sleepers:
            await clock.advance(60)
        else:
            await asyncio.sleep(0.01)
    return task.result()


def counting_child(marker: Path, *, transient_runs: int) -> list[str]:
    """argv of a child that logs each run to `marker` and exits 75 for its first runs."""
    code = (
        f"import sys; p = {str(marker)!r}; open(p, 'a').write('ran\\n'); "
        f"sys.exit(75 if len(open(p).read().splitlines()) <= {transient_runs} else 0)"
    )
    return [PY, "-c", code]


def runs(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


# --- command ---------------------------------------------------------------------------------


async def test_command_exit_zero_is_ok_with_output(clock: FakeClock) -> None:
    code = "import os; print(os.environ['OPSMEDIC_INCIDENT_ID'], os.environ['OPSMEDIC_ATTEMPT'])"
    result = await CommandAction().run(command(argv=[PY, "-c", code]), context(clock))
    assert result.ok
    assert result.data == {"exit_code": 0, "output": "7 2\n"}


async def test_command_sees_idempotency_key_and_extra_env(clock: FakeClock) -> None:
    code = "import os; print(os.environ['OPSMEDIC_IDEMPOTENCY_KEY'], os.environ['TARGET'])"
    params = command(argv=[PY, "-c", code], env={"TARGET": "etl"})
    result = await CommandAction().run(params, context(clock))
    assert result.data["output"] == "opsmedic-incident-7-attempt-2 etl\n"


async def test_command_non_zero_exit_is_not_ok(clock: FakeClock) -> None:
    code = "import sys; print('disk full'); sys.exit(3)"
    result = await CommandAction().run(command(argv=[PY, "-c", code]), context(clock))
    assert not result.ok
    assert result.message == "exit code 3"
    assert result.data == {"exit_code": 3, "output": "disk full\n"}


async def test_command_captures_stderr(clock: FakeClock) -> None:
    code = "import sys; sys.stderr.write('oops\\n')"
    result = await CommandAction().run(command(argv=[PY, "-c", code]), context(clock))
    assert result.data["output"] == "oops\n"


async def test_command_timeout_kills_and_is_not_ok(clock: FakeClock) -> None:
    params = command(argv=[PY, "-c", "import time; time.sleep(30)"], timeout=0.5)
    started = time.monotonic()
    result = await CommandAction().run(params, context(clock))
    assert time.monotonic() - started < 5
    assert not result.ok
    assert "timeout" in result.message


async def test_command_timeout_keeps_what_the_command_printed(clock: FakeClock) -> None:
    params = shell("echo step 1 done; sleep 30", timeout=0.5)
    result = await CommandAction().run(params, context(clock))
    assert not result.ok and result.data["timed_out"] is True
    assert result.data["output"] == "step 1 done\n"


async def test_a_command_cut_short_is_reconciled_from_its_record(
    clock: FakeClock, tmp_path: Path
) -> None:
    """The daemon died while the command ran: the next daemon learns its exit status from
    the record the wrapper left, without running it again."""
    marker = tmp_path / "runs"
    params = shell(f"echo ran >> {marker}; echo healed; exit 3", timeout=5)
    ctx = context(clock, records=tmp_path / "records")
    first = await CommandAction().run(params, ctx)
    assert first.data["exit_code"] == 3
    again = await CommandAction().reconcile(params, ctx)
    assert again is not None and again.data == {"exit_code": 3, "output": "healed\n"}
    assert marker.read_text() == "ran\n"  # it ran once
    other = context(clock, attempt=9, records=tmp_path / "records")
    assert await CommandAction().reconcile(params, other) is None  # never started


async def test_command_timeout_kills_the_whole_shell_pipeline(clock: FakeClock) -> None:
    params = shell("sleep 2; echo late", timeout=0.2)
    started = time.monotonic()
    result = await CommandAction().run(params, context(clock))
    assert not result.ok
    assert time.monotonic() - started < 1.5


async def test_command_through_shell(clock: FakeClock) -> None:
    params = shell("echo incident $OPSMEDIC_INCIDENT_ID | tr a-z A-Z")
    result = await CommandAction().run(params, context(clock))
    assert result.ok
    assert result.data["output"] == "INCIDENT 7\n"


async def test_command_runs_in_cwd(clock: FakeClock, tmp_path: Path) -> None:
    params = command(argv=[PY, "-c", "import os; print(os.getcwd())"], cwd=str(tmp_path))
    result = await CommandAction().run(params, context(clock))
    assert result.data["output"].strip() == str(tmp_path)


@pytest.mark.parametrize(
    "params",
    [
        {"argv": ["true"], "shell": True},
        {"argv": ["true"], "command": "true", "shell": True},
        {"command": "true"},
        {"shell": True},
        {},
        {"argv": []},
    ],
)
def test_command_params_need_argv_or_shell_command(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        command(**params)


async def test_command_missing_program_is_permanent(clock: FakeClock, tmp_path: Path) -> None:
    params = command(argv=[str(tmp_path / "no-such-program")])
    with pytest.raises(PermanentError, match="cannot start"):
        await CommandAction().run(params, context(clock))


async def test_missing_program_is_not_retried(clock: FakeClock, tmp_path: Path) -> None:
    params = command(argv=[str(tmp_path / "no-such-program")])
    with pytest.raises(PermanentError):
        await run_with_retries(CommandAction(), params, context(clock), retries=2)
    assert clock.sleepers == 0


async def test_retry_exit_code_raises_temporary(clock: FakeClock) -> None:
    params = command(argv=[PY, "-c", "import sys; sys.exit(75)"], retry_exit_codes=[75])
    with pytest.raises(TemporaryError, match="exited 75"):
        await CommandAction().run(params, context(clock))


async def test_transient_exit_is_retried_until_it_succeeds(
    clock: FakeClock, tmp_path: Path
) -> None:
    marker = tmp_path / "runs"
    params = command(argv=counting_child(marker, transient_runs=1), retry_exit_codes=[75])
    task = asyncio.create_task(run_with_retries(CommandAction(), params, context(clock), retries=2))
    result = await drive(clock, task)
    assert result.ok
    assert runs(marker) == 2


async def test_retries_give_up_after_retries_plus_one_attempts(
    clock: FakeClock, tmp_path: Path
) -> None:
    marker = tmp_path / "runs"
    params = command(argv=counting_child(marker, transient_runs=99), retry_exit_codes=[75])
    task = asyncio.create_task(run_with_retries(CommandAction(), params, context(clock), retries=2))
    with pytest.raises(TemporaryError):
        await drive(clock, task)
    assert runs(marker) == 3


# --- backoff ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action_attempt", "expected"),
    [(1, 10.0), (2, 20.0), (3, 40.0), (4, 60.0), (10, 60.0)],
)
async def test_backoff_waits_exponentially_up_to_max(
    clock: FakeClock, action_attempt: int, expected: float
) -> None:
    params = BackoffParams.model_validate({"initial": "10s", "factor": 2, "max": "1m"})
    task = asyncio.create_task(
        BackoffAction().run(params, context(clock, action_attempt=action_attempt))
    )
    await settle()
    assert clock.sleepers == 1
    await clock.advance(expected - 0.1)
    assert not task.done()
    await clock.advance(0.1)
    assert task.done()
    assert task.result() == ActionResult(
        ok=True, message=f"waited {expected:g}s", data={"waited_seconds": expected}
    )


def test_backoff_factor_below_one_is_refused() -> None:
    with pytest.raises(ValidationError, match="factor"):
        BackoffParams.model_validate({"factor": 0.5})


# --- http ------------------------------------------------------------------------------------


def http(url: str, **params: Any) -> HttpParams:
    return HttpParams.model_validate({"url": url, **params})


async def test_http_restart_heals_the_toy_service(clock: FakeClock, web: ToyWebService) -> None:
    web.spike_errors(0.5)
    result = await HttpAction().run(http(f"{web.url}/admin/restart"), context(clock))
    assert result.ok
    assert result.data["status"] == 200
    assert json.loads(result.data["body"]) == {"restarted": True, "restarts": 1}
    assert web.error_share == 0
    assert web.restarts == 1


async def test_http_sends_idempotency_key(clock: FakeClock, recorder: ScriptedServer) -> None:
    await HttpAction().run(http(f"{recorder.url}/hook"), context(clock))
    [received] = recorder.requests
    assert (received.method, received.path) == ("POST", "/hook")
    assert received.headers["Idempotency-Key"] == "opsmedic-incident-7-attempt-2"


async def test_http_sends_json_body(clock: FakeClock, recorder: ScriptedServer) -> None:
    params = http(recorder.url, method="PUT", json={"job": "etl", "force": True})
    result = await HttpAction().run(params, context(clock))
    assert result.ok
    [received] = recorder.requests
    assert received.method == "PUT"
    assert received.headers["Content-Type"] == "application/json"
    assert json.loads(received.body) == {"job": "etl", "force": True}


async def test_http_sends_custom_headers(clock: FakeClock, recorder: ScriptedServer) -> None:
    params = http(recorder.url, headers={"Authorization": "Bearer t"})
    await HttpAction().run(params, context(clock))
    assert recorder.requests[0].headers["Authorization"] == "Bearer t"


async def test_http_keeps_lowercase_content_type(
    clock: FakeClock, recorder: ScriptedServer
) -> None:
    params = http(
        recorder.url, json={"a": 1}, headers={"content-type": "application/merge-patch+json"}
    )
    await HttpAction().run(params, context(clock))
    assert recorder.requests[0].headers["Content-Type"] == "application/merge-patch+json"


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_http_server_error_is_temporary(
    clock: FakeClock, recorder: ScriptedServer, status: int
) -> None:
    recorder.status = status
    with pytest.raises(TemporaryError, match=str(status)):
        await HttpAction().run(http(recorder.url), context(clock))


async def test_http_client_error_is_not_ok(clock: FakeClock, recorder: ScriptedServer) -> None:
    recorder.status = 404
    result = await HttpAction().run(http(recorder.url), context(clock))
    assert not result.ok
    assert result.message == "HTTP 404"


async def test_http_expect_status_decides_ok(clock: FakeClock, recorder: ScriptedServer) -> None:
    recorder.status = 409  # "already restarting" counts as done here
    params = http(recorder.url, expect_status=[200, 409])
    assert (await HttpAction().run(params, context(clock))).ok


async def test_http_5xx_is_retried_on_the_fake_clock(
    clock: FakeClock, recorder: ScriptedServer
) -> None:
    recorder.status = 502
    task = asyncio.create_task(
        run_with_retries(HttpAction(), http(recorder.url), context(clock), retries=2)
    )
    with pytest.raises(TemporaryError):
        await drive(clock, task)
    assert len(recorder.requests) == 3
    keys = {r.headers["Idempotency-Key"] for r in recorder.requests}
    assert keys == {"opsmedic-incident-7-attempt-2"}  # retries reuse the key


def test_old_attempt_records_are_pruned_and_recent_ones_kept(tmp_path: Path) -> None:
    import os

    from daemon.actions.base import prune_records

    old, recent = tmp_path / "command" / "attempt-1", tmp_path / "command" / "attempt-2"
    for record in (old, recent):
        record.mkdir(parents=True)
        (record / "status").write_text("0\n")
    os.utime(old, (1_000_000, 1_000_000))
    assert prune_records(tmp_path, before=2_000_000) == 1
    assert not old.exists() and recent.exists()
