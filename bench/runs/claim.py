"""One trainer per run: training a run starts by claiming it.

The claim is the run's running.json, created atomically (a complete file hard-linked into place,
which fails when the name exists, on local disks and NFS alike) with the holder's host, pid,
process start time and SLURM job inside, and touched every ``HEARTBEAT_S`` while it is held. A
second process that finds a run claimed by a live holder leaves it alone. A claim whose holder is
gone is taken over: a dead pid (or a pid now owned by another process) on this host, a SLURM job
no longer in the queue, or, from another host without SLURM, no heartbeat for ``STALE_AFTER_S``.
Taking over goes through a second atomic create, so two processes never both take one claim.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.io import read_json, write_json

RUNNING_FILE = "running.json"  # the claim: who trains the run (bench.runs.files names the run's other files)
SUBMITTED_FILE = "submitted.json"  # the SLURM job a run was submitted as, before it claims the run
HEARTBEAT_S = 30.0
# Another host's holder is taken to be gone after this long without a heartbeat: long enough for a
# file server's clock to differ from ours by minutes, short against a run's hours.
STALE_AFTER_S = 15 * 60.0
TAKEOVER_FILE = ".running.takeover"
TAKEOVER_STALE_S = 60.0  # a takeover lock older than this was left by a process that died taking over


def slurm_job_id() -> str | None:
    """This process's SLURM job as squeue names it (array tasks as JOB_TASK), or None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def slurm_job_state(job_id: str) -> str | None:
    """PENDING, RUNNING, ... while squeue lists the job; None once it has left the queue (or without squeue)."""
    if shutil.which("squeue") is None:
        return None
    try:
        done = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    states = done.stdout.split()
    return states[0] if done.returncode == 0 and states else None


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (Linux); tells a live holder from a
    new process that was given a dead holder's pid. None where /proc cannot say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def _read(path: Path) -> dict | None:
    try:
        found = read_json(path)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _heartbeat_age(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return None


def is_running(run_dir: Path, ask_scheduler: bool = True) -> tuple[bool, str]:
    """Whether a live process or a queued/running SLURM job holds the run, and which.
    Without ``ask_scheduler`` a SLURM job is taken at its run's word (running.json or
    submitted.json), and the queue is not asked."""
    marker = _read(run_dir / RUNNING_FILE)
    job = (marker or {}).get("slurm_job") or (_read(run_dir / SUBMITTED_FILE) or {}).get("job_id")
    if job and job == slurm_job_id():
        return False, ""  # this very job, before a requeue: what it left is its own to resume
    if job and not ask_scheduler:
        return True, f"SLURM job {job}, as its run files say (bench status asks the queue)"
    if job:
        state = slurm_job_state(job)
        if state:
            return True, f"SLURM job {job} {state.lower()}"
        if shutil.which("squeue") is not None:
            return False, ""  # the queue no longer has it: whatever it left is what there is
    if marker is None:
        return False, ""
    host, pid = marker.get("host"), marker.get("pid")
    since = f"since {marker.get('started')}"
    if host != socket.gethostname():  # its process cannot be checked from here: its heartbeat can
        age = _heartbeat_age(run_dir / RUNNING_FILE)
        if age is not None and age > STALE_AFTER_S:
            return False, ""
        beat = f", last heartbeat {age:.0f} s ago" if age is not None else ""
        return True, f"pid {pid} on {host} {since}{beat}"
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False, ""
    except PermissionError:
        pass  # alive, owned by someone else
    started = marker.get("pid_start")
    if started is not None and process_start(int(pid)) not in (None, started):
        return False, ""  # the pid was given to another process since
    return True, f"pid {pid} on {host} {since}"


def _create(path: Path, content: dict) -> bool:
    """Write ``content`` to ``path`` as one atomic step that fails when ``path`` exists."""
    import json

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(content, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


@dataclass
class Claim:
    """A run held by this process; ``took_over`` describes the gone holder it replaced, if any."""

    path: Path
    token: str
    took_over: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)

    def beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass  # the next beat tries again; a missing file is released below

    def release(self) -> None:
        self._stop.set()
        if (_read(self.path) or {}).get("token") == self.token:
            self.path.unlink(missing_ok=True)


def _describe(marker: dict | None) -> str:
    if not marker:
        return "an unreadable claim"
    job = f", SLURM job {marker['slurm_job']}" if marker.get("slurm_job") else ""
    return f"pid {marker.get('pid')} on {marker.get('host')}{job}, since {marker.get('started')}"


def try_claim(run_dir: Path) -> Claim | str:
    """Claim the run for this process, or say who holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUNNING_FILE
    pid = os.getpid()
    mine = {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": process_start(pid),
        "slurm_job": slurm_job_id(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "token": uuid.uuid4().hex,
    }
    if _create(path, mine):
        return Claim(path, mine["token"])
    running, where = is_running(run_dir)
    if running:
        return where
    lock = run_dir / TAKEOVER_FILE
    if not _create(lock, mine):
        age = _heartbeat_age(lock)
        if age is None or age < TAKEOVER_STALE_S:
            return "another process taking it over"
        lock.unlink(missing_ok=True)
        if not _create(lock, mine):
            return "another process taking it over"
    try:
        existed, gone = path.exists(), _read(path)
        if existed:
            running, where = is_running(run_dir)  # asked again under the lock: a new holder may have come
            if running:
                return where
        write_json(path, mine)
    finally:
        lock.unlink(missing_ok=True)
    return Claim(path, mine["token"], took_over=_describe(gone) if existed else "")


@contextmanager
def claimed(run_dir: Path) -> Iterator[Claim | str]:
    """``try_claim`` for the block: the claim is kept alive by a heartbeat and released at its end
    (also on an exception; a killed process leaves it for the next one to take over)."""
    claim = try_claim(run_dir)
    if isinstance(claim, str):
        yield claim
        return
    beat = threading.Thread(target=claim.beat, name=f"heartbeat {run_dir}", daemon=True)
    beat.start()
    try:
        yield claim
    finally:
        claim.release()
