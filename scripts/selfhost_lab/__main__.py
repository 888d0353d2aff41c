"""`python3 -m selfhost_lab` (with scripts/ on the path) runs the lab's command line, as scripts/lab.py does."""
import sys

from selfhost_lab.cli import main

sys.exit(main())
