"""The logging role's two shipper configurations, generated from its one source list.

Promtail's configuration runs in the molecule scenario and the lab. Alloy's cannot be run
on the machines these tests run on (no Alloy binary can be had here): it is rendered and
checked here AS TEXT ONLY, never claimed to run. Both templates are rendered from the same
`logging__all_sources` of roles/logging/vars/main.yml, as for an edge + Dify host, and must
carry the same sources with the same labels.
"""
from __future__ import annotations

import json
import re

import jinja2
import pytest
import yaml

from tests.helpers import ROOT

ROLE = ROOT / "roles" / "logging"
HOST = "app1.example.com"
PUSH = "http://192.0.2.31:3100/loki/api/v1/push"


def _combine(a, b):
    return {**a, **b}


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE / "templates")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True)
    env.filters["to_json"] = json.dumps
    env.filters["combine"] = _combine
    return env


def sources(env: jinja2.Environment) -> tuple[list[dict], dict]:
    """The source list and the common labels of vars/main.yml, rendered for an edge + Dify host."""
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    context = {"logging_journal_max_age": "12h", "logging_dify_project": "dify",
               "logging_edge_access_log": "/var/log/caddy/access.json", "selfhost_edge_proxy": "caddy",
               "inventory_hostname": HOST, "logging_env": "production"}

    def render(value):
        if isinstance(value, str):
            return env.from_string(value).render(context)
        if isinstance(value, list):
            return [render(v) for v in value]
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        return value
    return render(role_vars["logging__all_sources"]), render(role_vars["logging__common_labels"])


@pytest.fixture(scope="module")
def rendered():
    env = environment()
    source_list, common = sources(env)
    context = {"inventory_hostname": HOST, "logging__sources": source_list, "logging__common_labels": common,
               "logging__push_url": PUSH, "logging_promtail_port": 9080,
               "logging__promtail_state_dir": "/var/lib/promtail"}
    return {"sources": source_list,
            "promtail": env.get_template("promtail.yml.j2").render(context),
            "alloy": env.get_template("config.alloy.j2").render(context)}


def test_the_source_list_covers_journal_containers_and_the_edge_log(rendered):
    kinds = {s["name"]: (s["type"], s["group"]) for s in rendered["sources"]}
    assert kinds == {"journal": ("journal", None), "dify_containers": ("docker", "dify"), "edge_access": ("file", "edge")}


def test_both_configurations_start_with_the_managed_line(rendered):
    assert rendered["promtail"].startswith("# Managed by selfhost.dify")
    assert rendered["alloy"].startswith("// Managed by selfhost.dify")


def test_promtail_gives_every_source_the_host_env_and_service_labels(rendered):
    config = yaml.safe_load(rendered["promtail"])
    assert config["clients"][0]["url"] == PUSH
    assert config["positions"]["filename"] == "/var/lib/promtail/positions.yaml"
    assert config["server"]["http_listen_address"] == "127.0.0.1"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {s["name"] for s in rendered["sources"]}
    for name, job in jobs.items():
        static = {r["target_label"]: r["replacement"] for r in job["relabel_configs"] if "replacement" in r}
        assert static["host"] == HOST and static["env"] == "production", name
        dynamic = {r["target_label"]: r["source_labels"][0] for r in job["relabel_configs"] if "source_labels" in r}
        assert "service" in static or "service" in dynamic, name
    assert jobs["journal"]["journal"]["max_age"] == "12h"
    docker_sd = jobs["dify_containers"]["docker_sd_configs"][0]
    assert docker_sd["filters"] == [{"name": "label", "values": ["com.docker.compose.project=dify"]}]
    assert jobs["edge_access"]["static_configs"][0]["labels"]["__path__"] == "/var/log/caddy/access.json"


def _alloy_blocks(text: str) -> dict[str, str]:
    """{'<component> "<label>"': body} of the top-level blocks of an Alloy configuration."""
    blocks, depth, start, header = {}, 0, None, None
    for match in re.finditer(r'([a-z_.]+ "[a-z_]+") \{|\{|\}', text):
        if match.group(0).endswith("{"):
            if depth == 0:
                header, start = match.group(1), match.end()
            depth += 1
        else:
            depth -= 1
            assert depth >= 0, "unbalanced braces"
            if depth == 0:
                blocks[header] = text[start:match.start()]
    assert depth == 0, "unbalanced braces"
    return blocks


def test_alloy_text_has_the_same_sources_and_labels(rendered):
    """Alloy's configuration as text (it is never run here): one component chain per source,
    every source sends to the one loki.write, and carries the same labels as Promtail's."""
    text = rendered["alloy"]
    blocks = _alloy_blocks(re.sub(r"(?m)^\s*//.*$", "", text))
    assert f'url = "{PUSH}"' in blocks['loki.write "default"']
    assert 'max_age       = "12h"' in blocks['loki.source.journal "journal"']
    assert '"com.docker.compose.project=dify"' in blocks['discovery.docker "dify_containers"']
    assert "discovery.docker.dify_containers.targets" in blocks['loki.source.docker "dify_containers"']
    assert '"__path__" = "/var/log/caddy/access.json"' in blocks['local.file_match "edge_access"']
    for source in rendered["sources"]:
        body = "".join(b for h, b in blocks.items() if f'"{source["name"]}"' in h)
        assert "forward_to" in body and "loki.write.default.receiver" in body, source["name"]
        assert f'"{HOST}"' in body and '"production"' in body, source["name"]
        for rule in source["relabel"]:
            relabel = blocks[f'loki.relabel "{source["name"]}"']
            assert f'source_labels = ["{rule["from"]}"]' in relabel and f'target_label  = "{rule["to"]}"' in relabel
    promtail = yaml.safe_load(rendered["promtail"])
    for job in promtail["scrape_configs"]:
        static = {r["target_label"]: r["replacement"] for r in job["relabel_configs"] if "replacement" in r}
        body = "".join(b for h, b in blocks.items() if f'"{job["job_name"]}"' in h)
        for label, value in static.items():
            assert re.search(rf'"?{label}"? = "{re.escape(value)}"', body), (job["job_name"], label)
