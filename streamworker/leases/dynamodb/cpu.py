"""A worker's CPU utilisation as KCL 3 measures it, so that a KCL 3 leader weighs a streamworker
worker as it weighs its own: ``/proc/stat`` on EC2, the cgroup's CPU time against its quota in a
container (cgroup v2, else v1), and nothing where KCL finds no platform (then KCL 3 workers
report no metric either, and its leader balances on lease counts).

Each meter returns percent (0–100) of what the worker may use, over the time since the previous
sample; the first sample is 0 (nothing to compare with), as in KCL. A file that cannot be read
raises ``CpuUnreadable``: KCL then reports -1 for the period, which ``worker_metrics`` does too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol


class CpuUnreadable(Exception):
    """The platform's CPU figures could not be read."""


class CpuMeter(Protocol):
    def sample(self) -> float:
        """Percent utilisation since the previous sample (0 on the first)."""


def _line(path: Path) -> str:
    try:
        with path.open() as f:
            return f.readline().strip()
    except OSError as exc:
        raise CpuUnreadable(f"{path}: {exc.strerror or exc}") from None


def cpus_in_set(cpuset: str) -> int:
    """Cores in a cpuset list such as ``0-3,8,10-11`` (KCL's getAvailableCpusFromEffectiveCpuSet)."""
    total = 0
    for part in cpuset.split(","):
        lo, dash, hi = part.partition("-")
        total += int(hi) - int(lo) + 1 if dash else 1
    return total


class ProcStatCpu:
    """The host's busy share from the first line of ``/proc/stat`` (KCL's LinuxCpuWorkerMetric):
    of user + nice + system + idle + iowait, all but idle (iowait counts as busy, as in KCL)."""

    def __init__(self, stat: Path = Path("/proc/stat")) -> None:
        self._stat = stat
        self._last: tuple[int, int] | None = None  # (idle, total)
        self._last_line = ""

    def sample(self) -> float:
        line = _line(self._stat)
        try:
            fields = [int(v) for v in line.split()[1:6]]
        except ValueError:
            raise CpuUnreadable(f"{self._stat}: unexpected first line {line!r}") from None
        usr, nice, sys_, idle, iowait = fields
        total = usr + nice + sys_ + idle + iowait
        last, self._last = self._last, (idle, total)
        unchanged, self._last_line = line == self._last_line, line
        if last is None or unchanged:
            return 0.0
        d_idle, d_total = abs(idle - last[0]), abs(total - last[1])
        if d_total == 0 or d_total < d_idle:
            return 0.0  # iowait went back (the kernel allows it) on an idle machine: KCL says 0
        return (d_total - d_idle) / d_total * 100.0


class CgroupCpu:
    """CPU time the container used against the cores it may use (its quota, else its cpuset):
    KCL's Cgroupv2CpuWorkerMetric and Cgroupv1CpuWorkerMetric."""

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), version: int = 2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._root, self.version, self._clock = root, version, clock
        self._limit: float | None = None
        self._last: tuple[float, float] | None = None  # (cpu seconds, clock seconds)

    def limit(self) -> float:
        """Cores this cgroup may use."""
        if self.version == 2:
            quota, period = _line(self._root / "cpu.max").split()[:2]
            if quota == "max":
                return float(cpus_in_set(_line(self._root / "cpuset.cpus.effective")))
            return int(quota) / int(period)
        quota_us = int(_line(self._root / "cpu" / "cpu.cfs_quota_us"))
        if quota_us == -1:
            return float(cpus_in_set(_line(self._root / "cpuset" / "cpuset.effective_cpus")))
        return quota_us / int(_line(self._root / "cpu" / "cpu.cfs_period_us"))

    def _used(self) -> float:
        if self.version == 2:
            first = _line(self._root / "cpu.stat")  # "usage_usec N"
            name, _, value = first.partition(" ")
            if name != "usage_usec":
                raise CpuUnreadable(f"{self._root / 'cpu.stat'}: unexpected first line {first!r}")
            return int(value) / 1e6
        return int(_line(self._root / "cpu" / "cpuacct.usage")) / 1e9

    def sample(self) -> float:
        if self._limit is None:
            self._limit = self.limit()
        used, now = self._used(), self._clock()
        last, self._last = self._last, (used, now)
        if last is None or now <= last[1] or self._limit <= 0:
            return 0.0
        return min(100.0, (used - last[0]) / (now - last[1]) / self._limit * 100.0)


def platform_cpu(env: Mapping[str, str] | None = None, *, root: Path = Path("/"),
                 on_ec2: Callable[[], bool] | None = None) -> tuple[str, CpuMeter | None]:
    """The platform as KCL 3 detects it, in its order (ECS, EKS, EC2), and the meter KCL uses
    there: ``("none", None)`` where it finds none. ECS's meter reads the task metadata endpoint's
    statistics, which streamworker does not yet: there it reports no metric (named ``ecs``)."""
    env = os.environ if env is None else env
    if env.get("ECS_CONTAINER_METADATA_URI_V4") or env.get("ECS_CONTAINER_METADATA_URI"):
        return "ecs", None
    cgroup = root / "sys" / "fs" / "cgroup"
    if (root / "var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        if (cgroup / "cgroup.controllers").exists():
            return "eks", CgroupCpu(cgroup, 2)
        if (cgroup / "memory").exists() or (cgroup / "cpu").exists():
            return "eks", CgroupCpu(cgroup, 1)
        return "eks", None
    if env.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true" and (on_ec2 or _on_ec2)() \
            and (root / "proc").exists():
        return "ec2", ProcStatCpu(root / "proc" / "stat")
    return "none", None


def _on_ec2(timeout: float = 1.0) -> bool:
    """Whether EC2's instance metadata service answers (IMDSv2, then v1), as KCL's Ec2Resource asks."""
    import urllib.error
    import urllib.request

    base = "http://169.254.169.254/latest"
    headers: dict[str, str] = {}
    try:
        put = urllib.request.Request(f"{base}/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "600"})
        with urllib.request.urlopen(put, timeout=timeout) as r:
            headers["X-aws-ec2-metadata-token"] = r.read().decode()
    except (OSError, urllib.error.URLError):
        pass
    try:
        get = urllib.request.Request(f"{base}/dynamic/instance-identity/document", headers=headers)
        with urllib.request.urlopen(get, timeout=timeout) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False
