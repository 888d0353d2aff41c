"""The lab in a browser, as its users see it: Debian's Chromium on this machine, the lab's domain
sent to the edge's HTTPS port published on loopback, and the edge's own certificate authority
trusted in an NSS database of the lab's own (`<inventory>/.browser`; the user's browser profile
and the system's trust store are not touched). `scripts/lab.py browser` opens it; the browser
tests (tests/browser_journey.py) use the same set-up, headless."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from selfhost_lab.common import LabError, docker, ensure_dir, say, sh, tool, write_file
from selfhost_lab.inventory import EDGE_CA_ROOTS
from selfhost_lab.resources import Lab

CHROMIUM = os.environ.get("SELFHOST_CHROMIUM", "/usr/bin/chromium")
CA_NICKNAME = "selfhost.dify lab edge CA"


@dataclass
class BrowserSetup:
    """What a browser needs to open the lab's Dify over HTTPS with the edge's CA trusted."""

    domain: str
    https_port: int
    proxy: str
    ca_pem: str = field(repr=False)
    home: Path = field(default=Path())

    @property
    def url(self) -> str:
        return f"https://{self.domain}/"

    @property
    def args(self) -> list[str]:
        # The connection for the lab's domain goes to the published port; the URL, the Host
        # header, SNI and the certificate check all keep the domain.
        return [f"--host-rules=MAP {self.domain} 127.0.0.1:{self.https_port}"]

    @property
    def env(self) -> dict[str, str]:
        # Chromium on Linux reads the certificates it trusts from $HOME/.pki/nssdb.
        return {**os.environ, "HOME": str(self.home)}


def edge_host(lab: Lab) -> tuple[str, dict]:
    """The edge host of the lab and its variables (ansible-inventory)."""
    data = json.loads(sh([tool("ansible-inventory"), "-i", str(lab.inventory), "--list"], timeout=120))
    hosts = data.get("edge", {}).get("hosts", [])
    if not hosts:
        raise LabError(f"lab {lab.name!r} has no edge host; bring it up first (make lab)")
    return hosts[0], data["_meta"]["hostvars"][hosts[0]]


def trust(home: Path, ca_pem: str) -> None:
    """An NSS database under `home` that trusts exactly the edge's CA (re-imported when it changed)."""
    db = home / ".pki" / "nssdb"
    ensure_dir(db, 0o700)
    pem = home / "edge-ca.pem"
    if pem.exists() and pem.read_text() == ca_pem and (db / "cert9.db").exists():
        return
    if not (db / "cert9.db").exists():
        sh(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"])
    subprocess.run(["certutil", "-D", "-d", f"sql:{db}", "-n", CA_NICKNAME], capture_output=True, check=False)
    write_file(pem, ca_pem)
    sh(["certutil", "-A", "-d", f"sql:{db}", "-n", CA_NICKNAME, "-t", "C,,", "-i", str(pem)])


def setup(lab: Lab) -> BrowserSetup:
    host, hostvars = edge_host(lab)
    proxy = hostvars.get("selfhost_edge_proxy", "caddy")
    if "lab_https_port" not in hostvars:
        raise LabError(f"{host} publishes no HTTPS port")
    ca_pem = docker("exec", lab.container(host), "cat", EDGE_CA_ROOTS[proxy])
    if "BEGIN CERTIFICATE" not in ca_pem:
        raise LabError(f"{host}: no CA root at {EDGE_CA_ROOTS[proxy]}: converge the lab first (make lab)")
    found = BrowserSetup(domain=hostvars["selfhost_domain"], https_port=int(hostvars["lab_https_port"]),
                         proxy=proxy, ca_pem=ca_pem, home=lab.path(".browser"))
    ensure_dir(found.home, 0o700)
    trust(found.home, ca_pem)
    return found


def cmd_browser(args) -> int:
    lab = Lab(args.name)
    if lab.inventory is None or lab.existing_shape() is None:
        raise LabError(f"no lab {lab.name!r} is running; bring it up first (make lab)")
    found = setup(lab)
    command = [CHROMIUM, f"--user-data-dir={found.home / 'profile'}", *found.args, found.url]
    say(f"The lab's Dify: {found.url} through {found.proxy} on 127.0.0.1:{found.https_port}, its CA trusted in "
        f"{found.home / '.pki' / 'nssdb'}.")
    say("Chromium with that profile:")
    say(f"  HOME={found.home} " + " ".join(f"'{a}'" if " " in a else a for a in command))
    if args.print or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return 0
    if not Path(CHROMIUM).exists():
        raise LabError(f"{CHROMIUM} is missing: apt-get install chromium (or set SELFHOST_CHROMIUM)")
    subprocess.Popen(command, env=found.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    return 0
