"""Scripted container behaviour and the kubelet's view of a container, as a pure function of
(container start, image behaviour, restart policy, now)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .resources import go_duration, sha_hex, ts

MAX_BACKOFF_FACTOR = 30  # the kubelet caps CrashLoopBackOff at 5m = 30 x the 10s base


@dataclass(frozen=True)
class ImageBehavior:
    """How containers running an image behave.

    ready_after: seconds from (each) container start until it reports Ready.
    crash_after: the container exits with code 1 ("Error") this long after each start.
    oom_after: the container is OOMKilled (exit 137) this long after each start.
    pull_error: the image never pulls (ErrImagePull, then ImagePullBackOff); the pod stays Pending.
    exit_code / run_for: the process exits with ``exit_code`` after ``run_for`` seconds. Applies to
        restartPolicy Never/OnFailure pods (default exit code 0) and, when ``exit_code`` is set,
        also to restartPolicy Always pods (which then restart it).
    logs: the lines the container writes at each start.
    """

    ready_after: float = 1.0
    crash_after: float | None = None
    oom_after: float | None = None
    pull_error: bool = False
    exit_code: int | None = None
    run_for: float = 1.0
    logs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("ready_after", "crash_after", "oom_after", "run_for"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"ImageBehavior.{name} must be >= 0, got {value}")
        if isinstance(self.logs, list):
            object.__setattr__(self, "logs", tuple(self.logs))


HEALTHY = ImageBehavior()


@dataclass
class ContainerView:
    """What the kubelet reports for one container at one instant."""

    name: str
    image: str
    state: dict[str, Any]
    last_state: dict[str, Any]
    ready: bool
    started: bool
    restart_count: int
    container_id: str | None
    # "waiting" (never ran), "running", "backoff" (stopped, will restart), "succeeded", "failed"
    category: str
    next_change: float | None
    # starts of the current and previous instance (for logs)
    instance_start: float | None = None
    previous_start: float | None = None
    # monotone counters, diffed to emit kubelet events
    starts: int = 0
    backoffs: int = 0
    pull_attempts: int = 0
    pull_backoffs: int = 0
    backoff_delay: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    # where the cycle walk stopped, to resume it next time (an optimisation: same result)
    resume: tuple[Any, ...] | None = None


def image_ref(image: str) -> str:
    """The fully-qualified reference containerd reports for an image."""
    name = image
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    last = name.rsplit("/", 1)[-1]
    if "@" not in name and ":" not in last:
        name = f"{name}:latest"
    return name


def image_id(image: str) -> str:
    repo = image_ref(image).split("@", 1)[0]
    last = repo.rsplit("/", 1)
    if ":" in last[-1]:
        repo = repo[: repo.rfind(":")]
    return f"{repo}@sha256:{sha_hex('image:' + image)}"


def _lifetime(b: ImageBehavior, policy: str) -> tuple[float, int, str] | None:
    candidates: list[tuple[float, int, str]] = []
    if b.crash_after is not None:
        code = b.exit_code if b.exit_code not in (None, 0) else 1
        candidates.append((b.crash_after, code, "Error"))
    if b.oom_after is not None:
        candidates.append((b.oom_after, 137, "OOMKilled"))
    if policy != "Always" or b.exit_code is not None:
        code = b.exit_code if b.exit_code is not None else 0
        candidates.append((b.run_for, code, "Completed" if code == 0 else "Error"))
    if not candidates:
        return None
    return min(candidates, key=lambda c: c[0])


def backoff_delay(base: float, k: int) -> float:
    if k >= 30:
        return base * MAX_BACKOFF_FACTOR
    return min(base * (2**k), base * MAX_BACKOFF_FACTOR)


def simulate_container(
    *,
    name: str,
    image: str,
    behavior: ImageBehavior,
    policy: str,
    start: float,
    base_restarts: int,
    now: float,
    backoff: float,
    pod_ref: str,
    pod_uid: str,
    resume: tuple[Any, ...] | None = None,
) -> ContainerView:
    """The container's status at ``now`` given it was (re)created at ``start``.

    ``resume`` is the ``resume`` of an earlier view of the same container (same start,
    behaviour and policy) at an earlier or equal ``now``; it only skips recomputing cycles.
    """

    def cid(instance: int) -> str:
        return "containerd://" + sha_hex(f"{pod_uid}/{name}/{base_restarts + instance}")

    if behavior.pull_error:
        ref = image_ref(image)
        attempts, at, k = 0, start, 0
        if resume is not None and resume[0] == "pull":
            attempts, at, k = resume[1], resume[2], resume[3]
        while at <= now:
            attempts += 1
            at += backoff_delay(backoff, k)
            k += 1
        in_error = now - start < backoff
        if in_error:
            reason = "ErrImagePull"
            message = (
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
                f'failed to resolve reference "{ref}": {ref}: not found'
            )
            next_change = min(at, start + backoff)
        else:
            reason = "ImagePullBackOff"
            message = f'Back-off pulling image "{image}"'
            next_change = at
        return ContainerView(
            name=name,
            image=image,
            state={"waiting": {"reason": reason, "message": message}},
            last_state={},
            ready=False,
            started=False,
            restart_count=base_restarts,
            container_id=None,
            category="waiting",
            next_change=next_change,
            pull_attempts=attempts,
            pull_backoffs=0 if in_error else attempts,
            extra={"pull_message": message if in_error else None},
            resume=("pull", attempts, at, k),
        )

    life = _lifetime(behavior, policy)
    if life is None:
        ready_at = start + behavior.ready_after
        ready = now >= ready_at
        return ContainerView(
            name=name,
            image=image,
            state={"running": {"startedAt": ts(start)}},
            last_state={},
            ready=ready,
            started=True,
            restart_count=base_restarts,
            container_id=cid(0),
            category="running",
            next_change=None if ready else ready_at,
            instance_start=start,
            starts=1,
        )

    after, code, reason = life
    restarts = policy == "Always" or (policy == "OnFailure" and code != 0)
    s, k = start, 0
    previous: dict[str, Any] = {}
    previous_start: float | None = None
    if resume is not None and resume[0] == "cycle":
        k, s, previous_start = resume[1], resume[2], resume[3]
        if previous_start is not None:
            previous = {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": ts(previous_start),
                    "finishedAt": ts(previous_start + after),
                    "containerID": cid(k - 1),
                }
            }
    while True:
        end = s + after
        terminated = {
            "terminated": {
                "exitCode": code,
                "reason": reason,
                "startedAt": ts(s),
                "finishedAt": ts(end),
                "containerID": cid(k),
            }
        }
        if now < end:
            ready_at = s + behavior.ready_after
            ready = now >= ready_at
            next_change = end if ready or ready_at >= end else ready_at
            return ContainerView(
                name=name,
                image=image,
                state={"running": {"startedAt": ts(s)}},
                last_state=previous,
                ready=ready,
                started=True,
                restart_count=base_restarts + k,
                container_id=cid(k),
                category="running",
                next_change=next_change,
                instance_start=s,
                previous_start=previous_start,
                starts=k + 1,
                backoffs=k,
                resume=("cycle", k, s, previous_start),
            )
        if not restarts:
            return ContainerView(
                name=name,
                image=image,
                state=terminated,
                last_state=previous,
                ready=False,
                started=False,
                restart_count=base_restarts + k,
                container_id=cid(k),
                category="succeeded" if code == 0 else "failed",
                next_change=None,
                instance_start=s,
                previous_start=previous_start,
                starts=k + 1,
                backoffs=k,
                extra={"exit_code": code, "finished": end},
                resume=("cycle", k, s, previous_start),
            )
        delay = backoff_delay(backoff, k)
        if now < end + delay:
            message = (
                f"back-off {go_duration(delay)} restarting failed container={name} pod={pod_ref}"
            )
            return ContainerView(
                name=name,
                image=image,
                state={"waiting": {"reason": "CrashLoopBackOff", "message": message}},
                last_state=terminated,
                ready=False,
                started=False,
                restart_count=base_restarts + k,
                container_id=cid(k),
                category="backoff",
                next_change=end + delay,
                instance_start=s,
                previous_start=previous_start,
                starts=k + 1,
                backoffs=k + 1,
                backoff_delay=delay,
                extra={"exit_code": code, "finished": end},
                resume=("cycle", k, s, previous_start),
            )
        previous = terminated
        previous_start = s
        s = end + delay
        k += 1
