"""cluster/lifecycle.py with real processes: the launcher lock, the record of a run, leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from waits import wait_until

from cluster.lifecycle import LauncherBusy, LauncherLock, reap_leftovers

pytestmark = pytest.mark.timeout(60)


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_a_second_launcher_is_refused_naming_the_first(tmp_path: Path) -> None:
    first = LauncherLock(tmp_path)
    assert first.acquire() is None
    first.record(http_port=8123)
    try:
        with pytest.raises(LauncherBusy) as refused:
            LauncherLock(tmp_path).acquire()
        assert f"pid {os.getpid()}" in str(refused.value)
        assert "HTTP port 8123" in str(refused.value)
        # Another cluster id is another launcher's business.
        other = LauncherLock(tmp_path, cluster_id=1)
        other.acquire()
        other.release()
    finally:
        first.release()
    assert not (tmp_path / "launcher.json").exists()
    LauncherLock(tmp_path).acquire()  # free again


def test_the_lock_is_freed_when_its_holder_is_killed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import time
                from pathlib import Path
                from cluster.lifecycle import LauncherLock
                lock = LauncherLock(Path({str(tmp_path)!r}))
                lock.acquire()
                print("held", flush=True)
                time.sleep(120)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(LauncherBusy):
        LauncherLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = LauncherLock(tmp_path)
    previous = lock.acquire()  # the kernel released it; the dead run's record is handed over
    assert previous is not None and previous["pid"] == holder.pid
    lock.release()


def test_leftovers_of_a_dead_run_are_stopped_and_reused_pids_are_not(tmp_path: Path) -> None:
    leftover, bystander = _sleeper(), _sleeper()
    try:
        lock = LauncherLock(tmp_path)
        lock.acquire()
        lock.record_child("cluster-0", leftover.pid)
        lock.record_child("cluster-1", bystander.pid)
        record = lock._read()
        lock.release()
        assert record is not None
        # The bystander's pid "was reused": its start time differs from the recorded one.
        record["children"]["cluster-1"][1] -= 60
        stopped = reap_leftovers(record)
        assert stopped == ["cluster-0"]
        leftover.wait(5)  # (reap_leftovers may have reaped it already: our child here)
        assert not psutil.pid_exists(leftover.pid)
        assert psutil.pid_exists(bystander.pid) and bystander.poll() is None
    finally:
        for proc in (leftover, bystander):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_child_dies_with_its_parent_even_if_the_parent_was_gone_first(tmp_path: Path) -> None:
    # The parent exits at once; the child calls die_with_parent with the dead parent's pid
    # only afterwards (the race the watch thread covers), and must still go.
    script = textwrap.dedent("""
        import os, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c",
            "import os, sys, time\\n"
            "time.sleep(0.5)\\n"
            "from cluster.lifecycle import die_with_parent\\n"
            "die_with_parent(int(sys.argv[1]))\\n"
            "time.sleep(60)\\n", str(os.getpid())])
        print(child.pid, flush=True)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    pid = int(done.stdout.strip())

    def exited() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until("the orphan exits", exited, within=10)
