"""The selfhost.dify lab's command line: `scripts/lab.py up|converge|status|destroy`.

The lab itself is the package scripts/selfhost_lab/ (its docstring tells what the lab is and
what each command does); this file only runs its command line, with scripts/ on the path as
Python puts it for a script.
"""
import sys

from selfhost_lab.cli import main

if __name__ == "__main__":
    sys.exit(main())
