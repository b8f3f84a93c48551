"""A worker's CPU utilisation and metrics row as KCL 3 measures and writes them: ``/proc/stat``,
cgroup v2 and v1 (KCL's LinuxCpuWorkerMetric, Cgroupv2/v1CpuWorkerMetric), the platform chosen in
KCL's order, the 30 s report of 1 s samples, and the row compared with the one KCL 3.5.1 wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamworker.leases.dynamodb.cpu import CgroupCpu, CpuUnreadable, ProcStatCpu, cpus_in_set, platform_cpu
from streamworker.leases.dynamodb.table import LeaseTable
from streamworker.leases.dynamodb.worker_metrics import WorkerMetrics, WorkerMetricsRow, write
from tests.unit.leases.test_kcl3_state import metrics_row


class Steps:
    """A meter that returns the values it is given, and fails where the value is None."""

    def __init__(self, *values: float | None) -> None:
        self.values = list(values)

    def sample(self) -> float:
        v = self.values.pop(0)
        if v is None:
            raise CpuUnreadable("/sys/fs/cgroup/cpu.stat: No such file or directory")
        return v


def test_proc_stat_is_the_busy_share_of_user_nice_system_idle_and_iowait(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    cpu = ProcStatCpu(stat)
    stat.write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5\n")
    assert cpu.sample() == 0.0  # the first sample has nothing to compare with
    assert cpu.sample() == 0.0  # nor one whose line did not change
    stat.write_text("cpu  160 20 70 880 70 9 9 0 0 0\n")  # all but idle +120 of +200 (irq, softirq not counted)
    assert cpu.sample() == pytest.approx(60.0)
    stat.write_text("cpu  160 20 70 980 60 9 9 0 0 0\n")  # idle +100, iowait went back: an idle machine
    assert cpu.sample() == 0.0


def test_cgroup_v2_is_cpu_time_against_the_quota_or_the_cpuset(tmp_path: Path) -> None:
    now = [100.0]
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "cpuset.cpus.effective").write_text("0-1\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 5000000\nuser_usec 1\n")
    cpu = CgroupCpu(tmp_path, 2, clock=lambda: now[0])
    assert cpu.sample() == 0.0 and cpu.limit() == 2.0
    now[0] += 2.0
    (tmp_path / "cpu.stat").write_text("usage_usec 6000000\n")  # 1 core-second in 2 s of 2 cores
    assert cpu.sample() == pytest.approx(25.0)
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    quota = CgroupCpu(tmp_path, 2, clock=lambda: now[0])
    assert quota.limit() == 0.5
    quota.sample()
    now[0] += 1.0
    (tmp_path / "cpu.stat").write_text("usage_usec 7000000\n")  # 1 core-second against half a core
    assert quota.sample() == 100.0  # capped, as KCL caps it


def test_cgroup_v1_reads_cpuacct_and_the_cfs_quota(tmp_path: Path) -> None:
    now = [0.0]
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpuset").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cpuset" / "cpuset.effective_cpus").write_text("0-3,8\n")
    (tmp_path / "cpu" / "cpuacct.usage").write_text("1000000000\n")
    cpu = CgroupCpu(tmp_path, 1, clock=lambda: now[0])
    assert cpu.limit() == 5.0
    cpu.sample()
    now[0] += 1.0
    (tmp_path / "cpu" / "cpuacct.usage").write_text("2000000000\n")
    assert cpu.sample() == pytest.approx(20.0)
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    assert CgroupCpu(tmp_path, 1).limit() == 1.5


def test_a_missing_cgroup_file_is_named() -> None:
    with pytest.raises(CpuUnreadable, match="/nonexistent/cpu.max"):
        CgroupCpu(Path("/nonexistent"), 2).sample()


def test_cpusets() -> None:
    assert [cpus_in_set(s) for s in ("0", "0-3", "0-3,8", "0-1,4-5,9")] == [1, 4, 5, 5]


def test_the_platform_is_found_in_kcls_order(tmp_path: Path) -> None:
    never = lambda: False  # noqa: E731
    assert platform_cpu({"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x"}, root=tmp_path,
                        on_ec2=never) == ("ecs", None)
    assert platform_cpu({}, root=tmp_path, on_ec2=never) == ("none", None)
    (tmp_path / "proc").mkdir()
    kind, meter = platform_cpu({}, root=tmp_path, on_ec2=lambda: True)
    assert kind == "ec2" and isinstance(meter, ProcStatCpu)
    token = tmp_path / "var/run/secrets/kubernetes.io/serviceaccount/token"
    token.parent.mkdir(parents=True)
    token.write_text("t")
    cgroup = tmp_path / "sys/fs/cgroup"
    (cgroup / "cpu").mkdir(parents=True)
    kind, meter = platform_cpu({}, root=tmp_path, on_ec2=never)
    assert kind == "eks" and isinstance(meter, CgroupCpu) and meter.version == 1
    (cgroup / "cgroup.controllers").write_text("cpu io memory\n")
    kind, meter = platform_cpu({}, root=tmp_path, on_ec2=never)
    assert kind == "eks" and isinstance(meter, CgroupCpu) and meter.version == 2


def test_a_report_is_the_periods_average_after_the_last_ten() -> None:
    metrics = WorkerMetrics("w-1", Steps(10.0, 20.0, 30.1234567, None, *[50.0] * 12), wall=lambda: 1_800_000_000.4)
    for _ in range(4):
        metrics.capture()
    row = metrics.report()
    assert row == WorkerMetricsRow("w-1", 1_800_000_000, {"C": [20.041152]}, {"C": [100]})
    assert metrics.last_error == "/sys/fs/cgroup/cpu.stat: No such file or directory"
    assert metrics.report().stats == {"C": [20.041152, -1.0]}  # no sample in a period: -1, as in KCL
    for _ in range(12):
        metrics.capture()
        metrics.report()
    assert metrics.report().stats["C"] == [50.0] * 9 + [-1.0]  # ten kept


def test_without_a_platform_the_row_is_the_one_kcl_351_wrote_there(table: LeaseTable) -> None:
    """KCL 3.5.1 on a host it did not recognise (captured on this machine) wrote empty maps."""
    metrics = WorkerMetrics("sw-1", None, wall=lambda: 1_800_000_000.0)
    write(table.client, table.table_name, metrics.report(), "lease-table")
    ours = table.client.get_item(TableName=table.table_name, Key={"leaseKey": {"S": "sw-1"}})["Item"]
    assert ours == metrics_row("sw-1", 1_800_000_000.0)
    table.list_leases(consistent=True)
    assert table.kcl3_workers == {"sw-1": 1_800_000_000.0}  # what KCL 3's leader reads, streamworker's guard too


def test_a_row_with_cpu_in_both_layouts(table: LeaseTable) -> None:
    client: Any = table.client
    client.create_table(TableName="unit-app-WorkerMetricStats", KeySchema=[{"AttributeName": "wid", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "wid", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    row = WorkerMetricsRow("sw-1", 1_800_000_000, {"C": [12.5, 0.0]}, {"C": [100]})
    write(client, table.table_name, row, "lease-table")
    write(client, "unit-app-WorkerMetricStats", row, "legacy-table")
    sts = {"M": {"C": {"L": [{"N": "12.5"}, {"N": "0.0"}]}}}
    opr = {"M": {"C": {"L": [{"N": "100"}]}}}
    lease_table = client.get_item(TableName=table.table_name, Key={"leaseKey": {"S": "sw-1"}})["Item"]
    legacy = client.get_item(TableName="unit-app-WorkerMetricStats", Key={"wid": {"S": "sw-1"}})["Item"]
    assert lease_table["sts"] == legacy["sts"] == sts and lease_table["opr"] == legacy["opr"] == opr
    assert lease_table["entityType"] == {"S": "WORKER_METRIC_STATS"} and "entityType" not in legacy
