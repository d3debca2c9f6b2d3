"""Persistent components without Discord: custom_ids, inline state, forms' fields."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import asyncpg
import discord
import pytest

from bot import components, outages, ui
from bot.components import forms, ids, paginator
from bot.components.handlers import REGISTRY, Handler
from bot.components.ids import CustomId
from bot.components.items import Ref


class NoPool:
    """A bot whose database must not be touched: state that fits goes in the custom_id."""

    @property
    def pool(self) -> Any:
        raise AssertionError("a round trip to PostgreSQL")


class Echo(Handler, name="t_echo"):
    action_room = 0


class Bet(forms.Form, name="t_bet"):
    title = "Place a bet"
    amount = forms.Number("Amount", low=1, high=1000, placeholder="50")
    odds = forms.Number("Odds", whole=False, required=False)
    note = forms.Text("Note", required=False, max_length=20, paragraph=True)


def test_custom_id_round_trip_and_what_is_not_ours() -> None:
    custom = CustomId("pages", "n3", "~abcdefghijklmnop")
    assert str(custom) == "gh:pages:n3:~abcdefghijklmnop"
    assert CustomId.parse(str(custom)) == custom
    assert custom.stored_id == "abcdefghijklmnop"
    assert CustomId("reroll", "", "x.y.1").stored_id is None
    for other in ("", "gh:", "gh:pages:n3:", "gh:Pages:n3:~x", "xx:pages::~x", "a" * 32):
        assert CustomId.parse(other) is None, other
    # A colon in the state is the state's (only the first three split).
    assert CustomId.parse('gh:reroll::x..":"').ref == 'x..":"'  # type: ignore[union-attr]
    assert CustomId("a", "", "1").same_state(CustomId("a", "n1", "1"))
    assert not CustomId("a", "", "1").same_state(CustomId("b", "", "1"))


def test_inline_state_round_trips_and_damage_is_none() -> None:
    ref = ids.encode_inline(1_800_000_000.7, 123456789012345678, {"e": "4d6: fire", "n": [1]})
    found = ids.decode_inline(ref)
    assert found == ids.Inline(1_800_000_000, 123456789012345678, {"e": "4d6: fire", "n": [1]})
    assert ids.decode_inline(ids.encode_inline(5, None, None)) == ids.Inline(5, None, None)
    for damaged in ("", "abc", "zz.zz", "zz.!.1", "1.2.{", "~x.y.1"):
        assert ids.decode_inline(damaged) is None, damaged


async def test_state_that_fits_costs_no_round_trip_and_stays_within_100() -> None:
    bot: Any = NoPool()
    owner = (1 << 63) - 1  # the longest snowflake
    room = ids.room(Echo.name, Echo.action_room)
    longest = 0
    for n in range(0, 100):
        try:
            ref = await Echo.new(bot, owner=owner, state="x" * n, stored=False)
        except ValueError:
            break
        custom_id = ref.custom_id()
        assert len(custom_id) <= ids.MAX_LENGTH
        assert ids.decode_inline(ref.ref).data == "x" * n  # type: ignore[union-attr]
        longest = n
    assert longest > 40 and len(ids.encode_inline(time.time(), owner, "x" * longest)) <= room
    with pytest.raises(ValueError, match="too large"):
        await Echo.new(bot, owner=owner, state="x" * 100, stored=False)


def test_handler_names_and_actions() -> None:
    with pytest.raises(ValueError, match="name"):

        class Bad(Handler, name="Bad Name"):
            pass

    with pytest.raises(ValueError, match="taken"):

        class Twin(Handler, name="t_echo"):
            pass

    assert REGISTRY["t_echo"] is Echo
    assert REGISTRY["pages"] is paginator.Pages
    ref = Ref(Echo, "1.2.3")
    with pytest.raises(ValueError, match="action"):
        ref.custom_id("toolong")
    with pytest.raises(ValueError, match="action"):
        Ref(paginator.Pages, "x").custom_id("a:b")


def test_number_fields_refuse_what_is_not_a_number() -> None:
    amount = Bet.inputs["amount"]
    assert amount.parse(" 50 ") == 50
    for raw, says in [
        ("abc", "must be a whole number, not `abc`"),
        ("5.5", "whole number"),
        ("0", "at least 1"),
        ("1001", "at most 1000"),
        ("", "is required"),
        ("`@everyone`", "not `'@\u200beveryone'`"),
    ]:
        with pytest.raises(forms.FieldError) as info:
            amount.parse(raw)
        assert says in str(info.value), (raw, str(info.value))
    odds = Bet.inputs["odds"]
    assert odds.parse("1,5") == 1.5 and odds.parse("") is None
    for raw in ("nan", "inf", "-Infinity", "x"):
        with pytest.raises(forms.FieldError):
            odds.parse(raw)
    with pytest.raises(forms.FieldError, match="at most 20 characters"):
        Bet.inputs["note"].parse("y" * 21)


def test_validate_names_every_wrong_field() -> None:
    values, problems = forms.validate(Bet, {"amount": "abc", "odds": "x", "note": "ok"})
    assert problems == [
        "**Amount** must be a whole number, not `abc`.",
        "**Odds** must be a number, not `x`.",
    ]
    values, problems = forms.validate(Bet, {"amount": "50"})
    assert problems == [] and values == {"amount": 50, "odds": None, "note": None}


def test_forms_declare_one_to_five_fields_and_a_title() -> None:
    assert list(Bet.inputs) == ["amount", "odds", "note"]
    with pytest.raises(ValueError, match="1 to 5"):

        class Huge(forms.Form, name="t_huge"):
            title = "Too much"
            a = forms.Text("a")
            b = forms.Text("b")
            c = forms.Text("c")
            d = forms.Text("d")
            e = forms.Text("e")
            f = forms.Text("f")

    with pytest.raises(ValueError, match="title"):

        class Untitled(forms.Form, name="t_untitled"):
            a = forms.Text("a")


async def test_a_modal_is_built_with_its_values_and_kept_nowhere() -> None:
    modal = forms.modal(Bet, "gh:t_bet::1.2.3", {"amount": "abc"})
    assert modal.is_finished(), "discord.py must not keep it: any worker takes the submission"
    data = modal.to_dict()
    assert data["custom_id"] == "gh:t_bet::1.2.3" and data["title"] == "Place a bet"
    labels = data["components"]
    assert [c["type"] for c in labels] == [18, 18, 18]
    amount = labels[0]["component"]
    assert amount["custom_id"] == "amount" and amount["value"] == "abc"
    assert labels[2]["component"]["style"] == discord.TextStyle.paragraph.value


def test_submitted_values_from_rows_and_labels() -> None:
    submitted = [
        {"type": 1, "id": 1, "components": [{"type": 4, "id": 2, "custom_id": "a", "value": "1"}]},
        {"type": 18, "id": 3, "component": {"type": 4, "id": 4, "custom_id": "b", "value": ""}},
        {"type": 18, "id": 5, "component": {"type": 5, "id": 6, "custom_id": "c", "values": ["9"]}},
        {"type": 10, "id": 7},
    ]
    assert forms.submitted_values(submitted) == {"a": "1", "b": "", "c": ["9"]}


async def test_views_of_persistent_components_are_kept_nowhere() -> None:
    ref = Ref(paginator.Pages, "~abcdefghijklmnop")
    view = components.view(ref.button("Go", action="n1"), ref.button("End", action="l1"))
    assert view.is_finished()
    (row,) = view.to_components()
    assert [b["custom_id"] for b in row["components"]] == [
        "gh:pages:n1:~abcdefghijklmnop",
        "gh:pages:l1:~abcdefghijklmnop",
    ]


class ClosedPool:
    async def execute(self, *args: Any) -> str:
        raise asyncpg.InterfaceError("connection is closed")


async def test_pages_without_the_database_still_answer_with_the_first() -> None:
    sent: list[dict[str, Any]] = []

    class Ctx:
        bot = SimpleNamespace(pool=ClosedPool())
        author = SimpleNamespace(id=1)

        async def send(self, **kwargs: Any) -> None:
            sent.append(kwargs)

    pages = ui.pages_from_lines("T", [str(i) for i in range(30)], per_page=10)
    try:
        await paginator.send_pages(Ctx(), pages)
    finally:
        outages.SERVERS[outages.POSTGRES].reachable()  # this test's outage is over
    (only,) = sent
    assert "view" not in only
    assert only["embed"].footer.text == "Page 1 of 3 · the rest once the database is back"
    assert pages[0].footer.text == "Page 1 of 3"
