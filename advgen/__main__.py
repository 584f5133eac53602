"""`python -m advgen ...`: the same command as `advgen ...` (for environments without the script on PATH)."""

import sys

from advgen.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
