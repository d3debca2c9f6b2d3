"""`python -m sandbox --exit-with-parent`: the sandbox goes when the process that started it
does, however that process ends. Real processes: a parent started here starts the sandbox, and
is killed with SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import pytest
from waits import until

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_ARGS = ["--host", "127.0.0.1", "--port", "0", "--guilds", "1", "--members", "3"]

# The parent: starts `python <its arguments>` (the sandbox), waits for the sandbox's banner,
# hands the sandbox's pid and banner to the test, then waits to be killed.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, *sys.argv[1:]], stdout=subprocess.PIPE)
banner = child.stdout.readline().decode().strip()
print(child.pid, banner, flush=True)
time.sleep(120)
"""

# The sandbox without the kernel's help (PR_SET_PDEATHSIG), as on systems that have none: only
# the once-a-second check of the parent is left.
WITHOUT_PDEATHSIG = """
import sys
import sandbox.runner as runner
runner.set_parent_death_signal = lambda sig: False
sys.exit(runner.main(sys.argv[1:]))
"""


# And the other way round: the kernel's signal alone, without the check once a second.
ONLY_PDEATHSIG = """
import sys
import sandbox.runner as runner
async def no_watch(parent, stop):
    pass
runner._watch_parent = no_watch
sys.exit(runner.main(sys.argv[1:]))
"""


@dataclass
class Family:
    parent: asyncio.subprocess.Process
    sandbox_pid: int
    banner: dict[str, Any]
    stderr: Path


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet (it was reparented)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextlib.asynccontextmanager
async def family(tmp_path: Path, *sandbox: str) -> AsyncIterator[Family]:
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as err:
        parent = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PARENT,
            *sandbox,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,  # the sandbox's too: it inherits it
            cwd=ROOT,
        )
    sandbox_pid = 0
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), 30)
        pid, _, banner = line.decode().partition(" ")
        sandbox_pid = int(pid)
        assert banner.startswith("SANDBOX "), (line, stderr.read_text())
        yield Family(parent, sandbox_pid, orjson.loads(banner[len("SANDBOX ") :]), stderr)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        if sandbox_pid and not gone(sandbox_pid):
            os.kill(sandbox_pid, signal.SIGKILL)


async def killing_the_parent_stops_the_sandbox(fam: Family) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(fam.banner["gateway_url"] + "?v=10&encoding=json")
        hello = await ws.receive_json(timeout=5)
        assert hello["op"] == 10
        assert not gone(fam.sandbox_pid)
        fam.parent.send_signal(signal.SIGKILL)
        await fam.parent.wait()
        killed_at = time.monotonic()
        # A clean shutdown, as on SIGTERM: the gateway says goodbye (1001 Going away) before
        # the process ends, rather than the connection just dropping.
        # (The close frame's code, not ws.close_code: that turns 1006 when the process is gone
        # before the client's closing handshake ends.)
        closing = await ws.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1001, closing
        await until(
            "the sandbox gone within 5 s of its parent",
            lambda: gone(fam.sandbox_pid),
            within=killed_at + 5 - time.monotonic(),
        )
    note = fam.stderr.read_text()
    assert f"the parent process {fam.parent.pid} is gone; shutting down" in note, note
    assert "Traceback" not in note, note


async def test_sandbox_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    args = ["-m", "sandbox", *SANDBOX_ARGS, "--exit-with-parent"]
    async with family(tmp_path, *args) as fam:
        await killing_the_parent_stops_the_sandbox(fam)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
async def test_the_kernels_signal_alone_does_it(tmp_path: Path) -> None:
    args = ["-c", ONLY_PDEATHSIG, *SANDBOX_ARGS, "--exit-with-parent"]
    async with family(tmp_path, *args) as fam:
        await killing_the_parent_stops_the_sandbox(fam)


async def test_without_the_kernels_help_the_check_once_a_second_does_it(tmp_path: Path) -> None:
    args = ["-c", WITHOUT_PDEATHSIG, *SANDBOX_ARGS, "--exit-with-parent"]
    async with family(tmp_path, *args) as fam:
        await killing_the_parent_stops_the_sandbox(fam)


async def test_a_parent_gone_before_the_sandbox_asked_the_kernel(tmp_path: Path) -> None:
    # The race the start-up check closes: the parent dies after the sandbox started but before
    # its prctl, so no signal will ever come. The sandbox knows the parent it started with (here
    # a pid that is not its parent now) and sees that it has another one.
    code = "import sys; from sandbox.runner import main; sys.exit(main(sys.argv[1:], parent_pid=1))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *SANDBOX_ARGS,
        "--exit-with-parent",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert b"the parent process 1 is gone; not starting" in err, err
    assert b"SANDBOX" not in out


async def test_the_flag_is_in_the_help() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", "--help", stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert b"--exit-with-parent" in out and b"PR_SET_PDEATHSIG" in out
