"""What every part of the lab uses: running commands, writing files, waiting, and the
error whose message is meant for the user."""
from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# The checkout: scripts/selfhost_lab/ is two levels below it.
ROOT = Path(__file__).resolve().parents[2]


class LabError(Exception):
    """A failure with a message meant for the user."""


def say(msg: str = "") -> None:
    print(msg, flush=True)


def log(msg: str) -> None:
    print(f"lab: {msg}", flush=True)


def sh(cmd: list[str], check: bool = True, input: str | None = None, timeout: float = 300) -> str:
    """Run a command, return its stdout; raise LabError with its output on failure."""
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise LabError(f"{cmd[0]} not found: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise LabError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def docker(*args: str, check: bool = True, input: str | None = None, timeout: float = 300) -> str:
    return sh(["docker", *args], check=check, input=input, timeout=timeout)


def tool(name: str) -> str:
    """A tool from the venv next to this script, else the running interpreter's, else PATH."""
    for candidate in (ROOT / ".venv" / "bin" / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise LabError(f"{name} not found (run `make venv`)")
    return found


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ensure_dir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)


def write_file(path: Path, content: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    os.chmod(tmp, mode)
    tmp.replace(path)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def wait_until(what: str, probe, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except LabError as exc:
            result, last = None, str(exc)
        if result:
            return result
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last}" if last else ""))
