"""The XP import file parser: line by line, every kind of bad line, with its line number."""

from __future__ import annotations

import codecs
import hashlib

import pytest

from bot import entry
from bot.cogs.leveling import importer
from bot.cogs.leveling.importer import MAX_ERRORS_LISTED, MAX_XP, ImportRefused, parse

ANN, BOB, CY = 111111111111111111, 222222222222222222, 333333333333333333


def errors(data: bytes) -> dict[int, str]:
    return {e.line: e.message for e in parse(data).errors}


def test_good_file_with_header_and_blank_lines() -> None:
    data = f"user_id,xp\n{ANN},1500\n\n{BOB}, 20 \r\n  \n{CY},0\n".encode()
    p = parse(data)
    assert p.rows == {ANN: 1500, BOB: 20, CY: 0}
    assert list(p.rows) == [ANN, BOB, CY]  # file order
    assert p.header and p.blank == 2 and p.lines == 6
    assert p.errors == [] and p.error_count == 0
    assert p.skipped == 3
    assert p.sha256 == hashlib.sha256(data).hexdigest()


def test_no_header_no_final_newline_bom_and_quotes() -> None:
    p = parse(codecs.BOM_UTF8 + f'"{ANN}","7"\r\n{BOB},8'.encode())
    assert p.rows == {ANN: 7, BOB: 8} and not p.header and p.lines == 2


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("abc,10", "user id 'abc' is not a Discord id"),
        ("-5,10", "user id '-5' is not a Discord id"),
        ("0,10", "user id 0 is out of range"),
        (f"{2**63},10", "is out of range"),
        ("123456789012345678901,10", "is not a Discord id"),
        (f"{ANN},12.5", "xp '12.5' is not a whole number"),
        (f"{ANN},1e3", "xp '1e3' is not a whole number"),
        (f"{ANN},", "xp '' is not a whole number"),
        (f"{ANN},-1", "xp -1 is negative"),
        (f"{ANN},{MAX_XP + 1}", f"xp {MAX_XP + 1:,} is more than the limit of {MAX_XP:,}"),
        (f"{ANN},{'9' * 30}", "is not a whole number"),
        (f"{ANN}", "expected 2 columns (user_id,xp), found 1"),
        (f"{ANN},5,extra", "expected 2 columns (user_id,xp), found 3"),
        (f"{ANN};5", "found 1 (separate the columns with a comma)"),
        (f"{ANN}\t5", "found 1 (separate the columns with a comma)"),
        (f"{ANN},{'1' * 300}", "longer than 256 bytes"),
    ],
)
def test_one_bad_line(line: str, expected: str) -> None:
    data = f"user_id,xp\n{BOB},1\n{line}\n{CY},2\n".encode()
    p = parse(data)
    assert p.rows == {BOB: 1, CY: 2}  # the good lines around it still count
    assert p.error_count == 1
    (err,) = p.errors
    assert err.line == 3
    assert expected in err.message


def test_max_xp_itself_is_accepted() -> None:
    assert parse(f"{ANN},{MAX_XP}".encode()).rows == {ANN: MAX_XP}


def test_duplicate_user_first_line_counts() -> None:
    p = parse(f"{ANN},10\n{BOB},5\n{ANN},99\n{ANN},10\n".encode())
    assert p.rows == {ANN: 10, BOB: 5}
    assert errors(f"{ANN},10\n{BOB},5\n{ANN},99\n{ANN},10\n".encode()) == {
        3: f"user {ANN} is already on line 1 (the first one counts)",
        4: f"user {ANN} is already on line 1 (the first one counts)",
    }


def test_a_bad_line_does_not_claim_the_user() -> None:
    # The first line for ANN is bad; the second one is the member's line.
    p = parse(f"{ANN},-3\n{ANN},30\n".encode())
    assert p.rows == {ANN: 30} and [e.line for e in p.errors] == [1]


def test_bad_encoding_is_a_line_error() -> None:
    data = f"{ANN},1\n".encode() + b"\xff\xfe\x00garbage,1\n" + f"{BOB},2\n".encode()
    assert errors(data) == {2: "not UTF-8 text (save the file as UTF-8)"}
    assert parse(data).rows == {ANN: 1, BOB: 2}


def test_nul_bytes_are_reported() -> None:
    assert "NUL" in errors(f"{ANN},1\n1\x002,3\n".encode())[2]


def test_utf16_file_is_refused() -> None:
    with pytest.raises(ImportRefused, match="UTF-16"):
        parse("user_id,xp\n1,2\n".encode("utf-16"))


def test_too_large_file_is_refused() -> None:
    with pytest.raises(ImportRefused, match="at most"):
        parse(b"1" * (importer.MAX_FILE_BYTES + 1))
    assert entry.MAX_IMPORT_BYTES == importer.MAX_FILE_BYTES


def test_header_only_on_the_first_content_line() -> None:
    e = errors(f"\n\nUser ID,XP\n{ANN},1\nuser_id,xp\n".encode())
    assert list(e) == [5]  # the second header-looking line is an error
    assert parse(b"\n\nUser ID,XP\n").header


def test_a_first_line_with_a_number_is_not_a_header() -> None:
    e = errors(f"name,5\n{ANN},1\n".encode())
    assert e == {1: "user id 'name' is not a Discord id (a whole number, up to 20 digits)"}


def test_control_characters_never_reach_the_report() -> None:
    e = errors(b"\x1b[31mred,1\n")
    assert "\x1b" not in e[1] and "\\x1b" in e[1]


def test_many_errors_listed_up_to_the_cap_and_counted() -> None:
    data = "\n".join(f"bad{i},x" for i in range(100)).encode()
    p = parse(b"1,1\n" + data)
    assert p.error_count == 100
    assert len(p.errors) == MAX_ERRORS_LISTED
    assert [e.line for e in p.errors] == list(range(2, 2 + MAX_ERRORS_LISTED))
    assert p.skipped == 100 and p.rows == {1: 1}


def test_empty_file() -> None:
    p = parse(b"")
    assert p.rows == {} and p.lines == 0 and p.error_count == 0


def test_award_ids_are_deterministic_and_distinct_per_revision() -> None:
    sha = "ab" * 32
    assert importer.award_id(1, 2, 1, sha) == importer.award_id(1, 2, 1, sha)
    assert importer.award_id(1, 2, 1, sha) != importer.award_id(1, 2, 2, sha)
    assert importer.award_id(1, 2, 1, sha).startswith("i:1:2:1:")
