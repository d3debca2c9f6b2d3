"""bot.dpy.check(): the worker's start-up check that the installed discord.py is one the
patches in bot/dpy/ were written for, and has every name they reach."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import discord
import discord.shard
import discord.utils
import pytest

from bot import dpy


def released(major: int, minor: int, micro: int) -> Any:
    """discord.version_info as a release of that version has it."""
    return discord.version_info._replace(
        major=major, minor=minor, micro=micro, releaselevel="final", serial=0
    )


def test_the_installed_discord_py_passes() -> None:
    dpy.check()


@pytest.mark.parametrize("version", [(2, 8, 0), (2, 7, 0), (2, 5, 0), (3, 0, 0)])
def test_another_version_stops_with_one_line_naming_both(
    monkeypatch: pytest.MonkeyPatch, version: tuple[int, int, int]
) -> None:
    monkeypatch.setattr(discord, "version_info", released(*version))
    with pytest.raises(dpy.Unsupported) as raised:
        dpy.check()
    line = str(raised.value)
    assert "\n" not in line
    assert f"discord.py {'.'.join(map(str, version))} is installed" in line
    assert "discord.py>=2.7.1,<2.8" in line


@pytest.mark.parametrize("version", [(2, 7, 1), (2, 7, 9)])
def test_a_release_within_the_range_passes(
    monkeypatch: pytest.MonkeyPatch, version: tuple[int, int, int]
) -> None:
    monkeypatch.setattr(discord, "version_info", released(*version))
    dpy.check()


def test_a_private_name_gone_is_named_with_the_patch_that_needs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(discord.utils, "_ActiveDecompressionContext")
    with pytest.raises(dpy.Unsupported) as raised:
        dpy.check()
    line = str(raised.value)
    assert "\n" not in line
    assert "no discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE" in line
    assert "(bot/dpy/compression.py)" in line


def test_an_instance_attribute_no_longer_set_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    class Shard:
        def __init__(self) -> None:
            self.queue_put = None  # renamed from _queue_put

    monkeypatch.setattr(discord.shard, "Shard", Shard)
    with pytest.raises(dpy.Unsupported, match=r"no discord\.shard\.Shard\._queue_put"):
        dpy.check()


def test_an_overridden_method_with_other_parameters_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def launch_shard(self: Any, gateway: Any, shard_id: int) -> None: ...

    monkeypatch.setattr(discord.shard.AutoShardedClient, "launch_shard", launch_shard)
    with pytest.raises(dpy.Unsupported) as raised:
        dpy.check()
    assert (
        "discord.shard.AutoShardedClient.launch_shard takes (self, gateway, shard_id), "
        "not (self, gateway, shard_id, *, initial)"
    ) in str(raised.value)


def test_the_pin_in_pyproject_is_the_range_checked() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["dependencies"] if d.startswith("discord.py")]
    assert pins == [dpy.REQUIREMENT] == ["discord.py>=2.7.1,<2.8"]
    assert dpy.SUPPORTED == ((2, 7, 1), (2, 8, 0))
