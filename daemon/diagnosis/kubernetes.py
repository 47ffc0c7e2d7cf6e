"""Causes found in Kubernetes evidence: container states and exit codes, Warning events, the
recent runs of a CronJob and the rollout (after k8sgpt's pod analyzer, Robusta's image-pull and
pending-pod classifiers, and Job podFailurePolicy's reading of exit codes and disruptions)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from daemon.diagnosis.causes import Cause

BAD_IMAGE_STATES = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "ErrImageNeverPull",
        "ImageInspectError",
    }
)
CONFIG_STATES = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "ContainerCannotRun",
    }
)

EXIT_CODES: Mapping[int, str] = {
    65: "data_error",  # EX_DATAERR
    69: "dependency_down",  # EX_UNAVAILABLE
    75: "transient",  # EX_TEMPFAIL
    77: "auth_failed",  # EX_NOPERM
    78: "config_error",  # EX_CONFIG
    126: "config_error",  # the command is not executable
    127: "config_error",  # the command was not found
}
"""Exit codes that name a cause (sysexits.h and the shell's); 137 is `oom` only with the
OOMKilled reason (otherwise SIGKILL: a liveness probe or an eviction)."""

_NOT_FOUND = re.compile(r"not found|manifest unknown|does not exist|no such|404", re.IGNORECASE)
_DENIED = re.compile(
    r"unauthori[sz]ed|authentication required|denied|forbidden|401|403", re.IGNORECASE
)
_CONFIG_REF = re.compile(
    r"(secret|configmap|serviceaccount)s? \"?[\w.-]+\"? not found|couldn't find key",
    re.IGNORECASE,
)
_NO_CAPACITY = re.compile(
    r"insufficient \w+|untolerated taint|had taint|didn't match (pod's )?node (affinity|selector)"
    r"|didn't match pod (anti-)?affinity|too many pods|didn't have free ports|max node group size",
    re.IGNORECASE,
)
_VOLUME = re.compile(
    r"persistentvolumeclaim|unbound|volume node affinity|multi-attach|attachvolume|mountvolume"
    r"|unable to attach or mount",
    re.IGNORECASE,
)
_QUOTA = re.compile(r"exceeded quota|forbidden: .*quota|must specify (limits|requests)", re.I)
_NODE_LOST = re.compile(r"node is not ready|node .* (not ready|unreachable)|NodeLost", re.I)
_DISRUPTED = re.compile(
    r"evict|preempt|node shutdown|shutting down|spot (instance )?interruption|DisruptionTarget",
    re.IGNORECASE,
)


def causes(evidence: Mapping[str, Any], *, fresh_release_window: float) -> Iterator[Cause]:
    yield from _from_events(evidence.get("warning_events") or [])
    yield from _from_containers(evidence)
    yield from _from_runs(evidence.get("recent_jobs") or [])
    fresh = fresh_release(evidence, window=fresh_release_window)
    if fresh is not None:
        yield fresh


def _from_events(events: list[Any]) -> Iterator[Cause]:
    for e in events:
        if not isinstance(e, Mapping):
            continue
        reason, message = str(e.get("reason") or ""), str(e.get("message") or "")
        source = f"event {reason} {e.get('object')}"
        cause = _event_cause(reason, message)
        if cause == "bad_image":
            yield Cause.of(cause, source, f"{reason} ({image_pull_variant(message)}): {message}")
        elif cause is not None:
            yield Cause.of(cause, source, f"{reason}: {message}")


def _event_cause(reason: str, message: str) -> str | None:
    if reason in BAD_IMAGE_STATES or "failed to pull image" in message.lower():
        return "bad_image"
    if reason == "FailedScheduling" or reason == "NotTriggerScaleUp":
        if _VOLUME.search(message):
            return "volume_error"
        return "no_capacity" if _NO_CAPACITY.search(message) else None
    if reason in ("FailedMount", "FailedAttachVolume"):
        return "config_error" if _CONFIG_REF.search(message) else "volume_error"
    if reason == "FailedCreate":
        if _QUOTA.search(message):
            return "quota_exceeded"
        return "config_error" if _CONFIG_REF.search(message) else None
    if reason in ("NodeNotReady", "NodeLost", "TaintManagerEviction") or _NODE_LOST.search(message):
        return "node_lost"
    if reason in ("Evicted", "Preempted", "Preempting", "NodeShutdown", "Killing") and (
        reason != "Killing" or _DISRUPTED.search(message)
    ):
        return "disrupted"
    if reason == "OOMKilling":
        return "oom"
    if reason in CONFIG_STATES or (reason == "Failed" and _CONFIG_REF.search(message)):
        return "config_error"
    return None


def image_pull_variant(message: str) -> str:
    if _DENIED.search(message):
        return "unauthorized"
    if _NOT_FOUND.search(message):
        return "not found"
    return "unknown"


def _from_containers(evidence: Mapping[str, Any]) -> Iterator[Cause]:
    problems = " ".join(str(p) for p in evidence.get("problems") or [])
    pull_errors = [
        str(e.get("message"))
        for e in evidence.get("warning_events") or []
        if isinstance(e, Mapping) and "pull" in str(e.get("message") or "").lower()
    ]
    for pod in evidence.get("pods") or []:
        if not isinstance(pod, Mapping):
            continue
        for c in pod.get("containers") or []:
            if not isinstance(c, Mapping):
                continue
            where = f"pod {pod.get('name')} container {c.get('name')}"
            state, reason = c.get("state"), str(c.get("reason") or "")
            last = c.get("last_termination") or {}
            if state == "waiting" and reason in BAD_IMAGE_STATES:
                why = pull_errors[0] if pull_errors else reason
                variant = image_pull_variant(why)
                yield Cause.of("bad_image", where, f"{reason} ({variant}): {why}")
            elif state == "waiting" and reason in CONFIG_STATES:
                yield Cause.of("config_error", where, reason)
            ended = c if state == "terminated" else last
            if ended.get("reason") == "OOMKilled" and (
                state == "terminated"
                or f"{pod.get('name')} container {c.get('name')}: OOMKilled" in problems
            ):
                yield Cause.of("oom", where, f"OOMKilled (exit code {ended.get('exit_code')})")
            elif state == "waiting" and reason == "CrashLoopBackOff":
                yield Cause.of(
                    "crashloop",
                    where,
                    f"CrashLoopBackOff; last exit code {last.get('exit_code')} "
                    f"({last.get('reason')})",
                )
            if state == "terminated" or (state == "waiting" and reason == "CrashLoopBackOff"):
                code = ended.get("exit_code")
                if isinstance(code, int) and code in EXIT_CODES:
                    yield Cause.of(
                        EXIT_CODES[code], where, f"exit code {code} ({ended.get('reason')})"
                    )
    for entry in evidence.get("logs") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("exit_code"), int):
            code = entry["exit_code"]
            where = f"logs {entry.get('pod')}/{entry.get('container')}"
            if entry.get("reason") == "OOMKilled":
                yield Cause.of("oom", where, f"OOMKilled (exit code {code})")
            elif code in EXIT_CODES:
                yield Cause.of(EXIT_CODES[code], where, f"exit code {code} ({entry.get('reason')})")


def _from_runs(jobs: list[Any]) -> Iterator[Cause]:
    """`repeated_failure`: the CronJob's last runs (reruns included) failed one after another."""
    failed: list[str] = []
    for job in reversed(jobs):
        if not isinstance(job, Mapping) or not job.get("failed") or job.get("succeeded"):
            break
        failed.append(str(job.get("name")))
    if len(failed) >= 2:
        yield Cause.of(
            "repeated_failure",
            "recent_jobs",
            f"the last {len(failed)} runs failed: {', '.join(reversed(failed))}",
        )


def fresh_release(evidence: Mapping[str, Any], *, window: float) -> Cause | None:
    """The current revision changed an image and the breach began within `window` after it."""
    if evidence.get("image_changed") is not True:
        return None
    after = evidence.get("breach_after_rollout_seconds")
    if not isinstance(after, int | float):
        return None
    if 0 <= after <= window:
        images = ", ".join(f"{k}={v}" for k, v in (evidence.get("images") or {}).items())
        return Cause.of(
            "fresh_release",
            "rollout",
            f"revision {evidence.get('revision')} ({images}) rolled out; the breach began "
            f"{after:.0f}s later",
        )
    return None


def rollout_timing(evidence: Mapping[str, Any], breach_age: float) -> dict[str, Any]:
    """`breach_after_rollout_seconds`: how long after the current revision's rollout the
    breach began (negative: before it), from `last_rollout_age_seconds` and the breach's age."""
    age = evidence.get("last_rollout_age_seconds")
    if not isinstance(age, int | float) or "breach_after_rollout_seconds" in evidence:
        return {}
    return {"breach_after_rollout_seconds": round(age - breach_age)}
