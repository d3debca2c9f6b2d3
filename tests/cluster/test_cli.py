from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from cluster.cli import build_parser, main


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*prefix, name), helps.get(name), sub
                yield from _subcommands(sub, (*prefix, name))


def test_every_command_has_help_text() -> None:
    found = list(_subcommands(build_parser()))
    names = {" ".join(p) for p, _, _ in found}
    assert {
        "run",
        "migrate",
        "config",
        "config check",
        "commands",
        "commands sync",
        "chat",
        "sandbox",
    } <= names
    for path, short, sub in found:
        assert short, f"`guildhouse {' '.join(path)}` has no one-line help"
        assert sub.description, f"`guildhouse {' '.join(path)}` has no description"
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{' '.join(path)} {action.option_strings} lacks help"


@pytest.mark.parametrize("argv", [["config"], ["commands"]])
def test_group_without_subcommand_prints_usage_and_exits_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# Helper commands find what a running launcher runs; with nothing running they start nothing.
HELPERS = [
    ("status",),
    ("status", "--json"),
    ("chat",),
    ("commands", "sync"),
    ("migrate", "--status"),
    ("leaderboards", "rebuild"),
    ("leaderboards", "import", "--guild", "1", "xp.csv"),
    ("restart", "--rolling"),
]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if text in cmdline:
            found.append(cmdline)
    return found


@pytest.mark.parametrize("argv", HELPERS, ids=" ".join)
def test_helper_with_nothing_running_says_so_and_starts_nothing(
    argv: tuple[str, ...], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (tmp_path / "xp.csv").write_text("user_id,xp\n1,10\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DISCORD_", "DATABASE_URL", "REDIS_URL", "GUILDHOUSE_"))
    }
    env.update(DATA_DIR=str(data), LOG_FORMAT="json")
    done = subprocess.run(
        [sys.executable, "-m", "cluster.cli", *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stderr.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("guildhouse: "), done.stderr
    assert "guildhouse run" in said[0] or "no clusters" in said[0], said[0]
    assert done.stdout.strip() in ("", "[]"), done.stdout
    # Nothing started: no server or sandbox holds the data directory, none was made in it.
    assert not _processes_mentioning(str(data))
    assert not any(data.glob("*/")) if data.exists() else True
