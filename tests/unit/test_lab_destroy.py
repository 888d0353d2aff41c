"""scripts/lab.py destroy: what goes and what stays (the backups volume), with the Docker
engine replaced by a recorder of the commands the lab would run."""
from __future__ import annotations

import json

import pytest

from selfhost_lab import cli, commands, resources


class Engine:
    """Answers the docker commands the lab issues for a three-host lab named test3."""

    def __init__(self):
        self.calls: list[tuple[str, ...]] = []
        self.hosts = {"edge1", "app1", "data1"}

    def __call__(self, *args, check=True, input=None, timeout=300):
        self.calls.append(args)
        if args[:2] == ("network", "ls"):
            return "net1\n"
        if args[:2] == ("network", "inspect"):
            return "/tmp/inventory-of-test3\n"
        if args[:2] == ("ps", "-aq"):
            return "".join(f"id-{h}\n" for h in sorted(self.hosts))
        if args[0] == "inspect":
            return json.dumps([{"Name": f"/selfhost-lab-test3-{i[3:]}", "State": {"Running": True},
                                "Config": {"Labels": {resources.LABEL_HOST: i[3:], resources.LABEL_LAYOUT: "three",
                                                      resources.LABEL_DEBIAN: "13"}}} for i in args[1:]])
        if args[:2] == ("volume", "ls"):
            return "".join(f"selfhost-lab-test3-{h}-docker\n" for h in sorted(self.hosts)) + "selfhost-lab-test3-backups\n"
        return ""

    def removed(self, kind: str) -> list[str]:
        flags = {"-f", "-v"}
        prefix = ("rm",) if kind == "container" else ("volume", "rm")
        return [a for c in self.calls if c[:len(prefix)] == prefix for a in c[len(prefix):] if a not in flags]


@pytest.fixture
def engine(monkeypatch):
    fake = Engine()
    for module in (commands, resources):
        monkeypatch.setattr(module, "docker", fake)
    monkeypatch.setattr(commands, "remove_generated", lambda inventory, everything: None)
    return fake


def test_destroying_hosts_removes_them_with_their_docker_volumes_and_keeps_the_backups(engine):
    assert cli.main(["destroy", "--name", "test3", "--host", "data1", "--host", "app1"]) == 0
    assert sorted(engine.removed("container")) == ["selfhost-lab-test3-app1", "selfhost-lab-test3-data1"]
    assert sorted(engine.removed("volume")) == ["selfhost-lab-test3-app1-docker", "selfhost-lab-test3-data1-docker"]
    assert not any(c[0] == "network" and c[1] == "rm" for c in engine.calls)


def test_plain_destroy_keeps_the_backups_volume_and_all_removes_it(engine):
    assert cli.main(["destroy", "--name", "test3"]) == 0
    assert "selfhost-lab-test3-backups" not in engine.removed("volume")
    assert "selfhost-lab-test3-edge1-docker" in engine.removed("volume")
    engine.calls.clear()
    assert cli.main(["destroy", "--name", "test3", "--all"]) == 0
    assert "selfhost-lab-test3-backups" in engine.removed("volume")


@pytest.mark.parametrize("argv, message", [
    (["destroy", "--host", "app1"], "--host needs --name"),
    (["destroy", "--name", "test3", "--host", "app1", "--all"], "--all"),
    (["destroy", "--name", "test3", "--host", "db9"], "has no host db9"),
])
def test_destroying_hosts_refuses_what_it_cannot_do(engine, capsys, argv, message):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not engine.removed("container") and not engine.removed("volume")


def test_every_host_mounts_the_labs_backups_volume(engine, monkeypatch):
    from selfhost_lab import hosts
    monkeypatch.setattr(hosts, "docker", engine)
    monkeypatch.setattr(hosts, "wait_for_boot", lambda name: None)
    monkeypatch.setattr(hosts, "host_address", lambda lab, layout, host: "10.0.0.10")
    hosts.create_host(resources.Lab("test3"), "data1", "three", "13", "ssh-ed25519 AAAA")
    run = next(c for c in engine.calls if c[0] == "run")
    assert "selfhost-lab-test3-backups:/var/backups/selfhost" in run
