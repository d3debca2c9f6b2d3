"""The process's one record of a Redis outage: every component reports to it, and it logs one
WARNING when an outage starts and one INFO when it ends; the components' own lines are INFO."""

from __future__ import annotations

import logging

import pytest
from redis import exceptions as redis_errors

from ipc.client import Degraded, Outage, is_outage, redis_outage

REFUSED = redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Refused.")


@pytest.fixture
def record() -> Outage:
    """A record of the test's own, so other tests' errors don't decide what this one logs."""
    return Outage("redis", "Redis", log=logging.getLogger("test.outage"))


def component(record: Outage, name: str) -> Degraded:
    return Degraded(
        logging.getLogger(f"test.{name}"),
        f"{name}: Redis unreachable (%s); deciding locally",
        f"{name}: Redis is back",
        what=f"the {name}",
        outage=record,
        operation=name,
    )


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    return [(r.levelname, r.name, r.getMessage()) for r in caplog.records]


def test_two_components_one_outage_one_warning_one_info(
    record: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    changes: list[bool] = []
    record.watch(lambda r: changes.append(r.down))
    throttles, limiter = component(record, "throttles"), component(record, "limiter")
    throttles.succeeded()  # Redis answers: the state is known, nothing is logged
    assert changes == [False] and lines(caplog) == []

    throttles.failed(REFUSED)
    limiter.failed(REFUSED)
    throttles.failed(REFUSED)  # a probe that failed again
    assert record.down and throttles.down and limiter.down
    assert lines(caplog) == [
        (
            "WARNING",
            "test.outage",
            f"Redis is unreachable (the throttles: ConnectionError: {REFUSED}); "
            "what uses it falls back or retries until it is back",
        ),
        ("INFO", "test.throttles", f"throttles: Redis unreachable ({REFUSED}); deciding locally"),
        ("INFO", "test.limiter", f"limiter: Redis unreachable ({REFUSED}); deciding locally"),
    ]
    assert record.noticed_by == "the throttles"

    caplog.clear()
    limiter.succeeded()  # one success ends the outage for the process
    throttles.succeeded()
    limiter.succeeded()
    assert not record.down and not throttles.down and not limiter.down
    found = lines(caplog)
    assert [(level, name) for level, name, _ in found] == [
        ("INFO", "test.outage"),
        ("INFO", "test.limiter"),
        ("INFO", "test.throttles"),
    ]
    assert found[0][2].startswith("Redis is reachable again after ")

    caplog.clear()
    limiter.failed(redis_errors.TimeoutError("Timeout connecting to server"))
    throttles.failed(REFUSED)
    warnings = [m for level, _, m in lines(caplog) if level == "WARNING"]
    assert warnings == [
        "Redis is unreachable (the limiter: TimeoutError: Timeout connecting to server); "
        "what uses it falls back or retries until it is back"
    ]
    assert record.outages == 2
    assert changes == [False, True, False, True]


def test_a_component_still_down_reports_a_new_outage(
    record: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis came back (another component saw it) and went again before this component
    probed: its failing probe starts the second outage."""
    caplog.set_level(logging.INFO)
    throttles = component(record, "throttles")
    throttles.failed(REFUSED)
    record.reachable()
    throttles.failed(REFUSED)
    assert record.down and record.outages == 2
    assert [r.getMessage()[:20] for r in caplog.records if r.levelname == "WARNING"] == [
        "Redis is unreachable"
    ] * 2


def test_an_error_that_is_not_an_outage_stays_the_components_warning(
    record: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    throttles = component(record, "throttles")
    throttles.failed(redis_errors.ResponseError("OOM command not allowed"))
    assert throttles.down and not record.down  # the fallback, but no outage
    assert lines(caplog) == [
        (
            "WARNING",
            "test.throttles",
            "throttles: Redis unreachable (OOM command not allowed); deciding locally",
        )
    ]


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (REFUSED, True),
        (redis_errors.TimeoutError("Timeout reading from socket"), True),
        (redis_errors.BusyLoadingError("Redis is loading the dataset in memory"), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (redis_errors.ResponseError("WRONGTYPE"), False),
        (redis_errors.NoScriptError("NOSCRIPT"), False),
        (redis_errors.AuthenticationError("invalid password"), False),
        (redis_errors.MaxConnectionsError("Too many connections"), False),
    ],
)
def test_which_errors_are_an_outage(exc: BaseException, outage: bool) -> None:
    assert is_outage(exc) is outage


def test_components_report_to_the_process_record_by_default() -> None:
    assert component(Outage("x", "X"), "x").outage is not redis_outage
    assert Degraded(logging.getLogger("test"), "%s", "").outage is redis_outage
