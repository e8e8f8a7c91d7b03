"""Exporter processes against the multi-organisation simulator: shards, reload and the rate limit."""

from __future__ import annotations

import asyncio
import functools
import time
from itertools import combinations
from pathlib import Path

import bcrypt

from tests.fakes import wait_for
from tests.fleetkit import (
    SECRET,
    Samples,
    basic,
    exporter,
    get,
    orgs_of,
    post,
    scrape,
    simulator,
    status,
    total,
    write_config,
)

POLLS = "alvaria_emailqueue_polls_total"
ARRIVALS = "alvaria_emailqueue_arrivals_total"
RELOAD_OK = "alvaria_emailqueue_config_last_reload_successful"


def all_up(samples: Samples) -> bool:
    return all(v == 1 for (name, _), v in samples.items() if name == "alvaria_emailqueue_up")


async def test_three_shards_poll_every_organisation_exactly_once(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    # 30 organisations, three to a key; static queues keep the simulator cheap on a busy machine.
    async with simulator(
        30, api_key_per_org=True, orgs_per_key=3, scenario="large", emails=200
    ) as sim:
        targets = [sim.target(org, secret) for org in sim.config.org_ids]
        config = write_config(tmp_path / "config.yaml", targets, poll_interval="1s")
        async with (
            exporter(config, "--shard", "0", "--total-shards", "3", log=tmp_path / "0.log") as a,
            exporter(config, "--shard", "1", "--total-shards", "3", log=tmp_path / "1.log") as b,
            exporter(config, "--shard", "2", "--total-shards", "3", log=tmp_path / "2.log") as c,
        ):
            owned = []
            for shard, daemon in enumerate((a, b, c)):
                # Every organisation it polls is up (a first poll may time out on a busy machine).
                samples = await wait_for(functools.partial(scrape, daemon.base), all_up, 20)
                orgs = orgs_of(samples)
                owned.append(orgs)
                assert get(samples, "alvaria_emailqueue_shard_ordinal") == shard
                assert get(samples, "alvaria_emailqueue_total_shards") == 3
                assert get(samples, "alvaria_emailqueue_targets") == len(orgs)
            for one, other in combinations(owned, 2):
                assert not one & other, "an organisation is polled by two shards"
            assert set().union(*owned) == set(sim.config.org_ids)
            for orgs in owned:
                keys = {sim.config.api_key_for(org) for org in orgs}
                for key in keys:
                    group = {o for o in sim.config.org_ids if sim.config.api_key_for(o) == key}
                    assert group <= orgs, "a key's organisations are split between shards"
            # The simulator agrees: each organisation's emails were asked for.
            assert set(sim.model.requests.by_org) == set(sim.config.org_ids)
            # The API key never shows up: not in logs, not in metrics.
            for daemon in (a, b, c):
                assert "key-org-0001" not in daemon.logs()


async def test_reload_adds_removes_rotates_and_keeps_the_rest(tmp_path: Path) -> None:
    secrets = {org: tmp_path / f"{org}.secret" for org in ("org-0001", "org-0002", "org-0004")}
    for path in secrets.values():
        path.write_text(SECRET)
    async with simulator(4) as sim:
        config = tmp_path / "config.yaml"

        def configure(*orgs: str, **settings: object) -> None:
            targets = [sim.target(o, secrets.get(o, secrets["org-0001"])) for o in orgs]
            write_config(config, targets, poll_interval="1s", web_enable_lifecycle=True, **settings)

        configure("org-0001", "org-0002", "org-0003")
        async with exporter(config, log=tmp_path / "exporter.app.log") as daemon:
            await wait_for(
                lambda: scrape(daemon.base), lambda m: get(m, POLLS, org="org-0001") >= 3, 10
            )
            before = await scrape(daemon.base)
            assert get(before, RELOAD_OK) == 1
            loaded_at = get(
                before, "alvaria_emailqueue_config_last_reload_success_timestamp_seconds"
            )
            token_expiry = get(
                before, "alvaria_emailqueue_token_expiry_timestamp_seconds", org="org-0001"
            )

            # Rotate org-0002's secret: the simulator only takes the new one from now on.
            sim.model.config = type(sim.config)(**{**sim.config.__dict__, "client_secret": "new"})
            secrets["org-0002"].write_text("new\n")
            configure("org-0001", "org-0002", "org-0004")
            assert await post(daemon.base + "/-/reload") == (200, "configuration reloaded\n")
            reloaded_at = time.monotonic()

            after = await wait_for(
                lambda: scrape(daemon.base),
                lambda m: m.get((POLLS, (("org", "org-0004"),)), 0) >= 1,
                within=10,
            )
            assert time.monotonic() - reloaded_at < 2 * 1.0 + 0.5, "polled within two intervals"
            assert "org-0003" not in orgs_of(after, POLLS) | orgs_of(after, ARRIVALS)
            assert get(after, "alvaria_emailqueue_targets") == 3
            # Kept: counters and the cached token of an unchanged organisation.
            assert get(after, POLLS, org="org-0001") >= get(before, POLLS, org="org-0001")
            assert total(after, ARRIVALS, org="org-0001") >= total(before, ARRIVALS, org="org-0001")
            assert (
                get(after, "alvaria_emailqueue_token_expiry_timestamp_seconds", org="org-0001")
                == token_expiry
            )
            assert (
                get(after, "alvaria_emailqueue_config_last_reload_success_timestamp_seconds")
                > loaded_at
            )
            # Rotated: the next token request used the new secret (the old one is refused now).
            rotated = await wait_for(
                lambda: scrape(daemon.base),
                lambda m: (
                    m.get(
                        (
                            "alvaria_emailqueue_api_requests_total",
                            (("code", "200"), ("endpoint", "token"), ("org", "org-0002")),
                        ),
                        0,
                    )
                    >= 2
                ),
                within=10,
            )
            assert get(rotated, "alvaria_emailqueue_up", org="org-0002") == 1
            assert (
                total(rotated, "alvaria_emailqueue_api_requests_total", org="org-0002", code="401")
                == 0
            )
            assert get(rotated, POLLS, org="org-0002") >= get(before, POLLS, org="org-0002")

            # SIGHUP reloads too, and the process keeps running.
            configure("org-0001", "org-0002")
            daemon.hangup()
            await wait_for(lambda: scrape(daemon.base), lambda m: "org-0004" not in orgs_of(m), 10)
            assert daemon.proc.returncode is None
            assert '"trigger": "SIGHUP"' in daemon.logs()


async def test_invalid_reload_answers_500_and_changes_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    async with simulator(2) as sim:
        config = tmp_path / "config.yaml"
        good = [sim.target("org-0001", secret), sim.target("org-0002", secret)]
        on = {"poll_interval": "1s", "web_enable_lifecycle": True}
        write_config(config, good, **on)
        async with exporter(config, log=tmp_path / "exporter.app.log") as daemon:
            assert await status(daemon.base + "/-/reload") == 405
            before = await scrape(daemon.base)
            pasted = "sk-live-0123456789abcdef"  # a secret pasted where a duration belongs
            write_config(config, good[:1], poll_interval=pasted, web_enable_lifecycle=True)
            code, text = await post(daemon.base + "/-/reload")
            assert code == 500
            assert text.count("\n") == 1 and "poll_interval" in text, text
            assert pasted[:8] not in text and str(tmp_path) not in text, "no value, no path"
            assert '"event": "reload_failed"' in daemon.logs()
            # A missing secret file is refused the same way.
            write_config(config, [sim.target("org-0001", tmp_path / "missing")], **on)
            code, text = await post(daemon.base + "/-/reload")
            assert code == 500 and "client_secret" in text, text
            assert str(tmp_path) not in text
            after = await wait_for(
                lambda: scrape(daemon.base),
                lambda m: get(m, POLLS, org="org-0002") > get(before, POLLS, org="org-0002"),
                within=10,
            )
            assert get(after, RELOAD_OK) == 0
            assert orgs_of(after) == {"org-0001", "org-0002"}
            write_config(config, good, **on)
            assert (await post(daemon.base + "/-/reload"))[0] == 200
            assert get(await scrape(daemon.base), RELOAD_OK) == 1


async def test_reload_rereads_the_web_config(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)

    def users(password: str) -> str:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
        return f"basic_auth_users:\n  prometheus: '{hashed}'\n"

    web = tmp_path / "web.yml"
    web.write_text(users("old password"))
    old = basic("prometheus", "old password")
    new = basic("prometheus", "new password")
    async with simulator(1) as sim:
        config = write_config(
            tmp_path / "config.yaml",
            [sim.target("org-0001", secret)],
            poll_interval="1s",
            web_config_file=str(web),
            web_enable_lifecycle=True,
        )
        async with exporter(config, log=tmp_path / "exporter.app.log", auth=old) as daemon:
            url = daemon.base + "/-/reload"
            assert await status(url, method="POST") == 401, "reload is behind basic auth too"
            web.write_text(users("new password"))
            assert (await post(url, old))[0] == 200
            assert await status(daemon.base + "/metrics", old) == 401
            assert await status(daemon.base + "/metrics", new) == 200
            # A broken web config is refused; the one in force stays.
            web.write_text("basic_auth_users: [\n")
            code, text = await post(url, new)
            assert code == 500 and "web_config_file" in text
            assert await status(daemon.base + "/metrics", new) == 200


async def test_request_rate_limit_holds_across_ten_organisations(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    async with simulator(10, scenario="large", emails=200) as sim:  # one API key for all ten
        targets = [sim.target(org, secret) for org in sim.config.org_ids]
        config = write_config(
            tmp_path / "config.yaml", targets, poll_interval="1s", max_requests_per_second=5
        )
        async with exporter(config, log=tmp_path / "exporter.app.log") as daemon:
            started = int(time.time()) + 1
            await asyncio.sleep(4.2)
            ended = int(time.time()) - 1
            seen = sim.model.requests.per_second
            window = [seen[s] for s in range(started, ended + 1)]
            assert window and max(window) <= 5 + 1, window
            assert sum(window) >= 3 * len(window), "the rate limit is used, not idle"
            samples = await scrape(daemon.base)
            waited = total(samples, "alvaria_emailqueue_rate_limit_wait_seconds_total")
            assert waited > 0
            # Ten polls a second cannot fit five requests a second: the overrun is reported.
            assert total(samples, "alvaria_emailqueue_rate_limit_overrun_polls_total") > 0
            assert '"event": "poll_over_rate_limit"' in daemon.logs()


async def test_reload_is_off_unless_the_lifecycle_api_is_enabled(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    async with simulator(2) as sim:
        config = tmp_path / "config.yaml"
        write_config(config, [sim.target("org-0001", secret)], poll_interval="1s")
        async with exporter(config, log=tmp_path / "exporter.app.log") as daemon:
            # A cross-site form POST, or anyone on the network: refused, nothing reloaded.
            write_config(config, [sim.target("org-0002", secret)], poll_interval="1s")
            assert await post(daemon.base + "/-/reload") == (403, "lifecycle API is not enabled\n")
            assert orgs_of(await scrape(daemon.base)) == {"org-0001"}
            daemon.hangup()  # SIGHUP reloads either way
            await wait_for(lambda: scrape(daemon.base), lambda m: orgs_of(m) == {"org-0002"}, 10)


async def test_a_service_level_or_aggregation_reload_keeps_every_counter_and_gauge(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    async with simulator(3) as sim:
        config = tmp_path / "config.yaml"
        targets = [sim.target(org, secret) for org in ("org-0001", "org-0002", "org-0003")]
        write_config(config, targets, poll_interval="1s")
        async with exporter(config, log=tmp_path / "exporter.app.log") as daemon:
            before = await wait_for(
                lambda: scrape(daemon.base),
                lambda m: min(get(m, POLLS, org=o["org_id"]) for o in targets) >= 3,
                within=15,
            )
            rules = [{"match": {"work_type": f"wt-{i}|Sales.*"}, "target": "4h"} for i in range(50)]
            write_config(
                config, targets, poll_interval="1s", service_levels=rules,
                service_level_target="8h", waiting_states="Queued,Queued2", max_series=10000,
            )  # fmt: skip
            for _ in range(20):  # a storm of SIGHUPs: readiness and counters never dip
                daemon.hangup()
                assert await status(daemon.base + "/readyz") == 200
                now = await scrape(daemon.base)
                for target in targets:
                    org = target["org_id"]
                    assert get(now, POLLS, org=org) >= get(before, POLLS, org=org)
                    assert total(now, ARRIVALS, org=org) >= total(before, ARRIVALS, org=org)
                    assert total(now, "alvaria_emailqueue_emails", org=org) > 0, "gauges stay"
            after = await wait_for(
                lambda: scrape(daemon.base),
                lambda m: any(
                    n == "alvaria_emailqueue_service_level_target_seconds" and v == 8 * 3600
                    for (n, _), v in m.items()
                ),
                within=10,
            )
            for target in targets:
                org = target["org_id"]
                assert get(after, POLLS, org=org) > get(before, POLLS, org=org)
            assert '"event": "reloaded"' in daemon.logs()
            assert get(after, RELOAD_OK) == 1
