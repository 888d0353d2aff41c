"""The command line of the lab: `scripts/lab.py up|converge|status|destroy`."""
from __future__ import annotations

import argparse
import sys

import selfhost_lab
from selfhost_lab.browser import cmd_browser
from selfhost_lab.commands import cmd_converge, cmd_destroy, cmd_status, cmd_up
from selfhost_lab.common import LabError
from selfhost_lab.resources import DEBIAN_VERSIONS, DEFAULT_NAME, LAYOUTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab.py", description=selfhost_lab.__doc__.split("\n\n", maxsplit=1)[0],
                                     allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_name(p, default=DEFAULT_NAME):
        p.add_argument("--name", default=default,
                       help="lab name (default: the lab of inventories/lab)")
        return p

    up = with_name(sub.add_parser("up", help="create the lab (idempotent) and converge site.yml",
                                  allow_abbrev=False))
    up.add_argument("--layout", choices=sorted(LAYOUTS), default="single")
    up.add_argument("--debian", choices=DEBIAN_VERSIONS, default="13")
    up.add_argument("--no-converge", action="store_true", help="only create the hosts and the inventory")
    up.add_argument("--inventory", help="inventory directory (required for a named lab)")
    with_name(sub.add_parser("converge", help="run site.yml on the lab; other arguments go to ansible-playbook",
                             allow_abbrev=False))
    br = with_name(sub.add_parser("browser", help="open the lab's Dify in Chromium, the edge's CA trusted "
                                  "(prints the command without a display)", allow_abbrev=False))
    br.add_argument("--print", action="store_true", help="only print the command")
    st = with_name(sub.add_parser("status", help="show the lab", allow_abbrev=False))
    st.add_argument("--json", action="store_true")
    de = with_name(sub.add_parser("destroy", help="remove the lab (every lab without --name)",
                                  allow_abbrev=False), default=None)
    de.add_argument("--all", action="store_true",
                    help="also remove the key pair, the credentials and the backups volume")
    de.add_argument("--host", action="append", default=[],
                    help="remove only this host (repeatable) with its Docker volume; `up` recreates it fresh")

    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "converge":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra[:1] == ["--"]:
        extra = extra[1:]
    try:
        if args.command == "up":
            return cmd_up(args)
        if args.command == "converge":
            return cmd_converge(args, extra)
        if args.command == "browser":
            return cmd_browser(args)
        if args.command == "status":
            return cmd_status(args)
        return cmd_destroy(args)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
