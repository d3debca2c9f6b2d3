from __future__ import annotations

import argparse

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
