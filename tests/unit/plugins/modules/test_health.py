# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for selfhost.dify.health: option checks, targets, the retry schedule (with a
scripted clock) and the failure message. The probes against real services are in
tests/integration/test_health_module.py."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args
from ansible_collections.selfhost.dify.plugins.module_utils.probes import Result
from ansible_collections.selfhost.dify.plugins.modules import health

SECRET = "Pg-s3cret-never-shown"


def full(**check):
    """A check as AnsibleModule hands it over (every option present, defaults filled in)."""
    spec = health.check_spec()
    result = dict((key, spec[key].get("default")) for key in spec)
    result.update(check)
    return result


# -- option checks -------------------------------------------------------------------------------
def test_valid_checks_have_no_problems():
    checks = [
        full(name="api", type="http", url="http://127.0.0.1:5001/health", json={"status": "ok"}),
        full(name="web", type="tcp", host="127.0.0.1", port=3000),
        full(name="db", type="postgresql", host="10.0.0.5", user="dify", password=SECRET),
        full(name="redis", type="redis", host="10.0.0.6"),
        full(name="s3", type="s3", endpoint="http://10.0.0.7:8333", bucket="dify", access_key="AK", secret_key=SECRET),
    ]
    assert health.check_problems(checks, 120, 1) == []


def test_missing_options_are_named_with_their_check():
    problems = health.check_problems([
        full(name="db", type="postgresql", host="10.0.0.5"),
        full(name="s3", type="s3", endpoint="http://10.0.0.7:8333"),
        full(name="web", type="tcp", host="127.0.0.1"),
        full(name="api", type="http"),
    ], 120, 1)
    assert problems == [
        "check 'db' (postgresql) needs user",
        "check 's3' (s3) needs bucket, access_key, secret_key",
        "check 'web' (tcp) needs port",
        "check 'api' (http) needs url",
    ]


def test_options_of_another_type_are_refused():
    problems = health.check_problems([full(name="web", type="tcp", host="h", port=1, url="http://h/", user="x")])
    assert problems == ["check 'web' (tcp) does not use url, user (options of other check types)"]


def test_values_are_checked():
    problems = health.check_problems([
        full(name="a", type="http", url="ftp://h/", status=[200, 700]),
        full(name="a", type="redis", host="h", port=70000),
        full(name=" ", type="s3", endpoint="10.0.0.7:8333", bucket="b", access_key="k", secret_key="s"),
    ], -1, 0)
    assert problems == [
        "timeout must be 0 or more seconds, got -1",
        "interval must be 1 second or more, got 0",
        "check 'a' (http): url is not an http:// or https:// URL",
        "check 'a' (http): status must list HTTP status codes (100 to 599), got 700",
        "check 'a' (redis): the name is used by another check",
        "check 'a' (redis): port must be 1 to 65535, got 70000",
        "check ' ' (s3) has an empty name",
        "check ' ' (s3): endpoint is not an http:// or https:// URL",
    ]


def test_no_checks():
    assert health.check_problems([], 1, 1) == ["checks is empty: give at least one check"]


# -- targets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("check, expected", [
    (full(type="postgresql", host="10.0.0.5", user="dify", password=SECRET, database="dify"),
     "postgresql://dify@10.0.0.5:5432/dify"),
    (full(type="postgresql", host="fd00::5", port=5433, user="dify", password=SECRET),
     "postgresql://dify@[fd00::5]:5433/dify"),
    (full(type="redis", host="10.0.0.6", password=SECRET), "redis://10.0.0.6:6379"),
    (full(type="redis", host="10.0.0.6", username="dify", password=SECRET), "redis://dify@10.0.0.6:6379"),
    (full(type="tcp", host="127.0.0.1", port=3000), "tcp://127.0.0.1:3000"),
    (full(type="http", url="https://admin:%s@dify.example.com/health?token=%s" % (SECRET, SECRET)),
     "GET https://dify.example.com/health"),
    (full(type="s3", endpoint="http://10.0.0.7:8333", bucket="dify", access_key="AK", secret_key=SECRET),
     "http://10.0.0.7:8333/dify"),
    (full(type="s3", endpoint="https://s3.example.com", bucket="dify", path_style=False, access_key="AK",
          secret_key=SECRET), "https://dify.s3.example.com/"),
])
def test_target_has_no_secret(check, expected):
    assert health.target(check) == expected


# -- the retry schedule --------------------------------------------------------------------------
class Clock:
    """A scripted clock: sleeping moves it on, each probe takes `probe_seconds`."""

    def __init__(self, probe_seconds=0.0):
        self.now, self.sleeps, self.probe_seconds = 100.0, [], probe_seconds

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(clock, outcomes):
    """A probe function answering from `outcomes` (name -> list of bools; the last repeats)."""
    calls = []

    def probe_fn(check, timeout):
        calls.append((check["name"], round(clock.now - 100.0, 1), timeout))
        clock.now += clock.probe_seconds
        answers = outcomes[check["name"]]
        ok = answers[min(sum(1 for c in calls if c[0] == check["name"]) - 1, len(answers) - 1)]
        return Result(ok, "up" if ok else "down with %s" % SECRET)
    return probe_fn, calls


CHECKS = [full(name="db", type="tcp", host="h", port=1, password=SECRET), full(name="web", type="tcp", host="h", port=2)]


def test_every_check_passes_at_once():
    clock = Clock()
    probe_fn, calls = scripted(clock, {"db": [True], "web": [True]})
    results, elapsed = health.run_checks(CHECKS, 120, 1, probe_fn, clock, clock.sleep)
    assert [r["healthy"] for r in results] == [True, True]
    assert [r["attempts"] for r in results] == [1, 1]
    assert clock.sleeps == [] and elapsed == 0.0
    assert results[0] == {"name": "db", "type": "tcp", "target": "tcp://h:1", "healthy": True, "detail": "up",
                          "attempts": 1, "seconds": 0.0}


def test_only_failing_checks_are_probed_again_with_backoff():
    clock = Clock()
    probe_fn, calls = scripted(clock, {"db": [False, False, False, True], "web": [True]})
    results, elapsed = health.run_checks(CHECKS, 120, 1, probe_fn, clock, clock.sleep)
    assert [c[0] for c in calls].count("web") == 1
    assert [c[1] for c in calls if c[0] == "db"] == [0.0, 1.0, 3.0, 7.0]
    assert clock.sleeps == [1, 2, 4]
    assert results[0]["healthy"] and results[0]["attempts"] == 4 and results[0]["seconds"] == 7.0
    assert elapsed == 7.0


def test_backoff_is_capped_and_stops_at_the_timeout():
    clock = Clock()
    probe_fn, calls = scripted(clock, {"db": [False], "web": [True]})
    results, elapsed = health.run_checks(CHECKS, 40, 1, probe_fn, clock, clock.sleep)
    assert clock.sleeps == [1, 2, 4, 8, 10, 10, 5]  # the last pause ends at the deadline, then one last probe
    assert results[0]["attempts"] == 8 and not results[0]["healthy"]
    assert results[0]["detail"] == "down with ********"  # a secret of the checks is never shown
    assert elapsed == 40.0


def test_timeout_zero_probes_once_with_the_full_probe_timeout():
    clock = Clock()
    probe_fn, calls = scripted(clock, {"db": [False], "web": [False]})
    results, dummy = health.run_checks(CHECKS, 0, 1, probe_fn, clock, clock.sleep)
    assert [r["attempts"] for r in results] == [1, 1] and clock.sleeps == []
    assert {c[2] for c in calls} == {health.PROBE_TIMEOUT}


def test_probe_timeout_shrinks_near_the_deadline():
    clock = Clock()
    probe_fn, calls = scripted(clock, {"db": [False], "web": [True]})
    health.run_checks(CHECKS, 5, 1, probe_fn, clock, clock.sleep)
    assert [c[2] for c in calls if c[0] == "db"] == [5, 4, health.MIN_PROBE_TIMEOUT, health.MIN_PROBE_TIMEOUT]


def test_a_probe_that_raises_is_a_failed_check():
    def boom(check, timeout):
        raise RuntimeError("unexpected")
    results, dummy = health.run_checks(CHECKS[:1], 0, 1, boom)
    assert results[0]["detail"] == "probe error: RuntimeError: unexpected"


# -- the failure message -------------------------------------------------------------------------
def test_failure_message_is_a_table_of_the_checks_that_are_down():
    results = [
        dict(name="db", target="postgresql://dify@10.0.0.5:5432/dify", healthy=False,
             detail='password authentication failed for user "dify" (SQLSTATE 28P01)'),
        dict(name="redis", target="redis://10.0.0.6:6379", healthy=True, detail="PING answered PONG"),
        dict(name="s3", target="http://10.0.0.7:8333/dify", healthy=False, detail="cannot reach: connection refused"),
    ]
    assert health.failure_message(results, 120.4) == (
        "2 of 3 health checks failed after 120.4s:\n"
        'db | postgresql://dify@10.0.0.5:5432/dify | password authentication failed for user "dify" (SQLSTATE 28P01)\n'
        "s3 | http://10.0.0.7:8333/dify | cannot reach: connection refused")


# -- the module ----------------------------------------------------------------------------------
def run_module(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        health.main()
    out = capsys.readouterr().out
    assert SECRET not in out
    return json.loads(out)


def test_module_refuses_bad_options_before_probing(capsys, monkeypatch):
    monkeypatch.setattr(health, "probe", lambda check, timeout: pytest.fail("probed"))
    result = run_module(capsys, checks=[{"name": "db", "type": "postgresql", "host": "10.0.0.5", "password": SECRET}])
    assert result["failed"] is True
    assert result["msg"] == "health: check 'db' (postgresql) needs user"


def test_module_fails_with_the_table(capsys, monkeypatch):
    monkeypatch.setattr(health, "probe", lambda check, timeout: Result(check["name"] == "web", "said " + SECRET))
    result = run_module(capsys, timeout=0, checks=[
        {"name": "db", "type": "postgresql", "host": "10.0.0.5", "user": "dify", "password": SECRET},
        {"name": "web", "type": "tcp", "host": "127.0.0.1", "port": 3000}])
    assert result["failed"] is True and result["healthy"] is False and result["changed"] is False
    assert result["msg"].startswith("1 of 2 health checks failed after ")
    assert result["msg"].endswith("s:\ndb | postgresql://dify@10.0.0.5:5432/dify | said ********")
    assert [c["healthy"] for c in result["checks"]] == [False, True]


def test_module_reports_only_with_fail_false_and_in_check_mode(capsys, monkeypatch):
    monkeypatch.setattr(health, "probe", lambda check, timeout: Result(False, "down"))
    result = run_module(capsys, timeout=0, fail=False, _ansible_check_mode=True,
                        checks=[{"name": "web", "type": "tcp", "host": "127.0.0.1", "port": 3000}])
    assert "failed" not in result and result["healthy"] is False and result["changed"] is False
    assert result["msg"].endswith("web | tcp://127.0.0.1:3000 | down")


def test_module_healthy(capsys, monkeypatch):
    monkeypatch.setattr(health, "probe", lambda check, timeout: Result(True, "up"))
    result = run_module(capsys, _ansible_check_mode=True,
                        checks=[{"name": "web", "type": "tcp", "host": "127.0.0.1", "port": 3000}])
    assert result["healthy"] is True and result["changed"] is False and "msg" not in result
    assert result["checks"][0]["attempts"] == 1


def test_a_missing_client_library_fails_before_probing_and_names_the_package(capsys, monkeypatch):
    monkeypatch.setattr(health, "probe", lambda check, timeout: pytest.fail("probed"))
    monkeypatch.setattr(health.probes, "REDIS_IMPORT_ERROR", "ModuleNotFoundError: No module named 'redis'")
    monkeypatch.setattr(health.probes, "BOTOCORE_IMPORT_ERROR", "ModuleNotFoundError: No module named 'botocore'")
    result = run_module(capsys, checks=[
        {"name": "redis", "type": "redis", "host": "10.0.0.6", "password": SECRET},
        {"name": "storage", "type": "s3", "endpoint": "http://10.0.0.7:8333", "bucket": "dify",
         "access_key": "AKID", "secret_key": SECRET},
        {"name": "web", "type": "tcp", "host": "127.0.0.1", "port": 3000}])
    assert result["failed"] is True and result["healthy"] is False and result["checks"] == []
    assert result["msg"].startswith("health: Failed to import the required Python library (redis)")
    assert "the redis checks (Debian package python3-redis)" in result["msg"]
    assert "(botocore)" in result["msg"] and "the s3 checks (Debian package python3-botocore)" in result["msg"]


def test_only_the_libraries_of_the_listed_types_are_needed(capsys, monkeypatch):
    monkeypatch.setattr(health, "probe", lambda check, timeout: Result(True, "up"))
    monkeypatch.setattr(health.probes, "PSYCOPG2_IMPORT_ERROR", "ModuleNotFoundError: No module named 'psycopg2'")
    result = run_module(capsys, checks=[{"name": "web", "type": "tcp", "host": "127.0.0.1", "port": 3000}])
    assert result["healthy"] is True
