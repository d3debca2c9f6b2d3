"""What an operator sees: `guildhouse run` against the sandbox, scraped and probed over HTTP.

One real launcher process (two worker processes, four shards), its own PostgreSQL (so the test
can stop it) and the shared test Redis. Checks /readyz before and after the shards are READY
and with PostgreSQL stopped, /metrics with prometheus-client's parser (and `promtool check
metrics`), and the status page and the web leaderboard (after members chat) in headless
Chromium with screenshots.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import launcher_proc
import orjson
import pytest
from browser import OFFLINE, check_screenshot, chromium, headless
from e2e_harness import SandboxProc, new_prefix, running_sandbox
from launcher_proc import CLI, get, launcher_env
from prometheus_client.parser import text_string_to_metric_families
from waits import wait_until

from cluster.embedded import EmbeddedPostgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SHARDS, CLUSTERS = 4, 2


@dataclass
class Launcher:
    """`guildhouse run` (launcher_proc's) with what the tests here look at beside it."""

    run: launcher_proc.Launcher
    port: int
    postgres: EmbeddedPostgres
    sandbox: SandboxProc

    @property
    def env(self) -> dict[str, str]:  # the launcher's environment
        return self.run.env

    @property
    def readyz_seen(self) -> list[int]:
        return self.run.readyz_seen

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def launcher(redis_url: str) -> Iterator[Launcher]:
    # Outside pytest's temporary tree: another pytest session on the machine resets that
    # tree's root to 0700, which locks the embedded PostgreSQL's unprivileged user out of its
    # data mid-run (pg_ctl stop then fails with "Permission denied").
    data = Path(tempfile.mkdtemp(prefix="gh-operations-"))
    postgres = EmbeddedPostgres(data)
    service = postgres.start()
    try:
        with running_sandbox(
            "--guilds",
            "6",
            "--members",
            "5",
            "--max-concurrency",
            "4",
            "--identify-interval",
            "0.2",
        ) as sandbox:
            env = launcher_env(
                **sandbox.discord_env(),
                DATABASE_URL=service.url,
                REDIS_URL=redis_url,
                REDIS_PREFIX=new_prefix("ops"),
                SHARD_COUNT=str(SHARDS),
                CLUSTER_COUNT=str(CLUSTERS),
                DATA_DIR=str(data / "run"),
            )
            run = launcher_proc.Launcher(env, data / "run")
            try:
                yield Launcher(run, run.wait_ready(), postgres, sandbox)
            finally:
                run.stop()
    finally:
        postgres.stop()
        shutil.rmtree(data, ignore_errors=True)


def test_readyz_waits_for_every_shard(launcher: Launcher) -> None:
    assert launcher.readyz_seen[0] == 503  # the HTTP side is up before the shards are
    assert launcher.readyz_seen[-1] == 200
    status, body = get(launcher.url("/healthz"))
    assert status == 200 and orjson.loads(body)["workers_alive"] == CLUSTERS


def _metrics(launcher: Launcher) -> tuple[str, dict[str, Any]]:
    status, body = get(launcher.url("/metrics"))
    assert status == 200
    text = body.decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_cover_every_cluster_and_shard(launcher: Launcher) -> None:
    # A few REST calls and gateway events have happened by the time every shard is READY.
    # A shard may be resuming a dropped connection on a loaded machine: wait for every shard's
    # series to be there and to say READY (2), as /readyz did a moment ago.
    families: dict[str, Any] = {}

    def every_shard_ready() -> bool:
        nonlocal families
        _, families = _metrics(launcher)
        states = families["guildhouse_shard_state"].samples
        # Captured output, shown if the wait fails.
        print("shard states:", [(s.labels["shard"], s.value) for s in states])
        shards = {s.labels["shard"] for s in states}
        return shards == {str(i) for i in range(SHARDS)} and all(s.value == 2 for s in states)

    wait_until("every shard's series in /metrics, READY (2)", every_shard_ready, 30, every=0.2)
    states = families["guildhouse_shard_state"].samples
    assert {s.labels["cluster"] for s in states} == {str(i) for i in range(CLUSTERS)}
    guilds = families["guildhouse_shard_guilds"].samples
    assert sum(s.value for s in guilds) == 6
    memory = families["guildhouse_worker_resident_memory_bytes"].samples
    assert {s.labels["cluster"] for s in memory} == {"0", "1"}
    assert all(s.value > 10_000_000 for s in memory)
    events = families["guildhouse_gateway_events"].samples  # counters lose _total in families
    assert {s.labels["type"] for s in events} >= {"READY", "GUILD_CREATE"}
    rest = families["guildhouse_rest_requests"].samples
    assert any(s.labels["route"] == "GET /users/@me" for s in rest)
    queries = families["guildhouse_db_query_duration_seconds"].samples
    assert {s.labels["cluster"] for s in queries if s.name.endswith("_count")} == {"0", "1"}


def test_ipc_metrics_after_a_cluster_wide_command(launcher: Launcher) -> None:
    _, body = get(f"{launcher.sandbox.control}/_sandbox/world")
    guild = orjson.loads(body)["guilds"][0]
    channel = next(c["id"] for c in guild["channels"] if int(c["type"]) == 0)
    request = urllib.request.Request(
        f"{launcher.sandbox.control}/_sandbox/messages",
        data=orjson.dumps(
            {"channel_id": channel, "author_id": guild["owner_id"], "content": "!about"}
        ),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status < 300
    families: dict[str, Any] = {}

    def ipc_series() -> bool:  # `about` gathers figures from every cluster over the IPC bus
        nonlocal families
        _, families = _metrics(launcher)
        handled = families.get("guildhouse_ipc_handled")
        return bool(
            families.get("guildhouse_ipc_requests")
            and handled
            and len({s.labels["cluster"] for s in handled.samples}) == CLUSTERS
        )

    wait_until("IPC series of every cluster after !about", ipc_series, 20, every=0.2)
    sent = families["guildhouse_ipc_requests"]
    assert any(
        s.labels["name"] == "cluster_stats" and s.labels["outcome"] == "ok" and s.value >= 1
        for s in sent.samples
    )


def test_metrics_pass_promtool(launcher: Launcher) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    text, _ = _metrics(launcher)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_status_json_and_guild_lookup(launcher: Launcher) -> None:
    data: dict[str, Any] = {}
    shards: dict[int, Any] = {}

    def every_shard_ready() -> bool:
        # A shard may be resuming a dropped connection on a loaded machine (as in the metrics
        # test above): every shard listed, and each READY again.
        nonlocal data, shards
        status, body = get(launcher.url("/status.json"))
        assert status == 200
        data = orjson.loads(body)
        shards = {int(k): v for c in data["clusters"] for k, v in c["shards"].items()}
        print("shard states:", {k: v["state"] for k, v in shards.items()})  # shown on failure
        return sorted(shards) == list(range(SHARDS)) and all(
            s["state"] == "ready" for s in shards.values()
        )

    wait_until("every shard in /status.json, ready", every_shard_ready, 30, every=0.2)
    assert data["shard_count"] == SHARDS
    assert [c["cluster_id"] for c in data["clusters"]] == [0, 1]
    assert all(
        s["last_event_age"] is not None and s["last_event_age"] < 60 for s in shards.values()
    )
    guild_id = _a_guild(launcher)
    status, body = get(launcher.url(f"/status/guild/{guild_id}"))
    found = orjson.loads(body)
    assert status == 200 and found["shard_id"] == (guild_id >> 22) % SHARDS
    assert found["cluster_id"] == found["shard_id"] * CLUSTERS // SHARDS
    status, body = get(launcher.url("/status/guild/not-a-number"))
    assert status == 400 and b"snowflake" in body


def _a_guild(launcher: Launcher) -> int:
    _, body = get(f"{launcher.sandbox.control}/_sandbox/world")
    return int(orjson.loads(body)["guilds"][0]["id"])


def test_status_page_in_chromium_shows_every_shard(
    launcher: Launcher, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    browser = chromium()
    page = launcher.url("/status")
    dom = headless(browser, tmp_path / "profile-dom", "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    for shard in range(SHARDS):
        assert f'data-shard="{shard}"' in html, html[-3000:]
    assert "All 4 shards are ready" in html
    assert html.count('class="state ready"') >= SHARDS + CLUSTERS
    # The 'which shard serves my server?' lookup, opened as a link.
    guild_id = _a_guild(launcher)
    shard = (guild_id >> 22) % SHARDS
    asked = headless(browser, tmp_path / "profile-ask", "--dump-dom", f"{page}?guild={guild_id}")
    assert f"Server {guild_id} is on shard {shard}, cluster {shard * CLUSTERS // SHARDS}" in (
        asked.stdout
    )
    assert f'<tr data-shard="{shard}" class="found">' in asked.stdout
    bad = headless(browser, tmp_path / "profile-bad", "--dump-dom", f"{page}?guild=12ab")
    assert "A server id is 15 to 21 digits" in bad.stdout
    shot = tmp_path / "status.png"
    result = headless(
        browser, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,900", page
    )
    assert result.returncode == 0, result.stderr[-2000:]
    check_screenshot(shot, min_size=20_000, keep_as="status.png")


def _say(launcher: Launcher, channel: str, author: str, content: str) -> None:
    request = urllib.request.Request(
        f"{launcher.sandbox.control}/_sandbox/messages",
        data=orjson.dumps({"channel_id": channel, "author_id": author, "content": content}),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status < 300


def test_web_leaderboard_after_chat(launcher: Launcher, tmp_path: Path) -> None:
    """Members chat; the launcher's leaderboard page and API rank them, in headless Chromium."""
    _, body = get(f"{launcher.sandbox.control}/_sandbox/world")
    guild = orjson.loads(body)["guilds"][1]
    channel = next(c["id"] for c in guild["channels"] if int(c["type"]) == 0)
    members = guild["member_ids"][:3]
    for member in members:
        _say(launcher, channel, member, "gg everyone, that raid was great")
    api = launcher.url(f"/api/leaderboard/{guild['id']}")
    data: dict[str, Any] = {}

    def ranked() -> bool:
        nonlocal data
        status, raw = get(api)
        assert status == 200, raw
        data = orjson.loads(raw)
        print("leaderboard:", data)  # captured output, shown if the wait fails
        return bool(data["total"] == len(members))

    wait_until("the three members ranked", ranked, 30, every=0.1)
    entries = data["entries"]
    assert sorted(e["user_id"] for e in entries) == sorted(members)
    assert [e["rank"] for e in entries] == [1, 2, 3]
    assert all(15 <= e["xp"] <= 25 and e["level"] == 0 for e in entries)  # one message each
    assert all(e["name"] and not e["name"].startswith("User ") for e in entries)
    status, raw = get(launcher.url("/api/leaderboard/global?period=day"))
    assert status == 200 and {e["user_id"] for e in orjson.loads(raw)["entries"]} >= set(members)
    status, raw = get(launcher.url(f"/api/leaderboard/{guild['id']}?period=fortnight"))
    assert status == 400 and orjson.loads(raw)["field"] == "period"

    browser = chromium()
    page = launcher.url(f"/leaderboard/{guild['id']}?period=day")
    dom = headless(
        browser,
        tmp_path / "profile-lb",
        OFFLINE,
        "--dump-dom",
        page,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    for e in entries:
        assert f'data-rank="{e["rank"]}" data-user="{e["user_id"]}"' in html
        assert f"<b>{e['xp']}</b>" in html
    assert html.count("Level 0 · ") == len(members)
    assert 'aria-current="page">Today</a>' in html
    shot = tmp_path / "leaderboard.png"
    result = headless(
        browser,
        tmp_path / "profile-lb-shot",
        OFFLINE,
        f"--screenshot={shot}",
        "--window-size=420,800",  # a phone
        page,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    check_screenshot(shot, min_size=10_000, keep_as="leaderboard-phone.png")


def test_csv_import_reaches_the_running_boards(launcher: Launcher, tmp_path: Path) -> None:
    """`guildhouse leaderboards import` beside a running cluster: bad lines reported, good ones
    ranked on the live boards (rebuilt while the bot runs); the same file again changes
    nothing."""
    _, body = get(f"{launcher.sandbox.control}/_sandbox/world")
    guild = orjson.loads(body)["guilds"][2]
    ann, bob = guild["member_ids"][:2]
    csv = tmp_path / "from-another-bot.csv"
    csv.write_text(f"user_id,xp\n{ann},4675\n{bob},255\nnobody,12\n{ann},1\n")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "leaderboards", "import", "--guild", guild["id"], str(csv)],
            env={**launcher.env, "LOG_LEVEL": "WARNING"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = run()
    assert first.returncode == 1, first.stdout + first.stderr  # 1: some lines skipped
    assert "2 imported, 3 skipped (0 blank, 1 header, 2 with errors)" in first.stdout
    assert "line 4: user id 'nobody' is not a Discord id" in first.stdout
    assert f"line 5: user {ann} is already on line 2" in first.stdout
    assert "2 member(s) changed (+4,930 XP)" in first.stdout
    assert "leaderboards rebuilt from PostgreSQL" in first.stdout
    status, raw = get(launcher.url(f"/api/leaderboard/{guild['id']}"))
    assert status == 200
    entries = orjson.loads(raw)["entries"]
    assert [(e["rank"], e["user_id"], e["xp"], e["level"]) for e in entries] == [
        (1, ann, 4675, 10),
        (2, bob, 255, 2),
    ]
    _, raw = get(launcher.url(f"/api/leaderboard/{guild['id']}?period=day"))
    assert orjson.loads(raw)["entries"] == []  # imported XP is all-time XP
    again = run()
    assert "0 member(s) changed (+0 XP), 2 already had this import" in again.stdout
    _, raw = get(launcher.url(f"/api/leaderboard/{guild['id']}"))
    assert [e["xp"] for e in orjson.loads(raw)["entries"]] == [4675, 255]


def _dashboard_queries(repo_root: Path) -> list[str]:
    dash = orjson.loads((repo_root / "docs" / "grafana" / "guildhouse.json").read_bytes())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    return [e.replace("$cluster", ".*") for e in exprs]


def test_grafana_dashboard_queries_what_the_bot_exports(
    launcher: Launcher, repo_root: Path, tmp_path: Path
) -> None:
    exprs = _dashboard_queries(repo_root)
    _, families = _metrics(launcher)
    exported = set()
    for family in families.values():
        exported |= {s.name for s in family.samples}
    used = {m for e in exprs for m in re.findall(r"guildhouse_[a-z_]+", e)}
    # Histograms are queried by their _bucket series; everything else by its own name.
    missing = {m for m in used if m not in exported and not m.endswith("_total")}
    # Counters that haven't counted yet export nothing; their families are declared in code.
    declared = {m for m in used if m.endswith("_total")}
    assert not missing, f"the dashboard queries series /metrics doesn't have: {sorted(missing)}"
    source = "".join(
        p.read_text() for d in ("bot", "cluster", "ipc") for p in (repo_root / d).rglob("*.py")
    )
    assert all(f'"{m}"' in source for m in declared), declared
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: PromQL syntax not checked")
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"q:{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "rules.json"  # JSON is YAML
    path.write_bytes(orjson.dumps(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readyz_fails_when_postgres_stops(launcher: Launcher) -> None:
    # Last in this module: it stops the launcher's database.
    launcher.postgres.stop()
    body = b""

    def not_ready() -> bool:
        nonlocal body
        status, body = get(launcher.url("/readyz"))
        return status == 503

    wait_until("/readyz not ready (503) with PostgreSQL stopped", not_ready, 30, every=0.1)
    assert "postgres unreachable" in orjson.loads(body)["problems"][0]
    # The status page's data names it too (PostgreSQL here is the test's, not embedded).
    status, body = get(launcher.url("/status.json"))
    assert status == 200
    snapshot = orjson.loads(body)
    assert any("postgres unreachable" in p for p in snapshot["problems"]), snapshot
    assert snapshot["services"] == {}
    status, _ = get(launcher.url("/healthz"))
    assert status == 200  # alive, just not ready: Kubernetes stops routing, doesn't restart
