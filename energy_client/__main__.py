"""``python -m energy_client COMMAND ...``: the command-line client (docs/cli.md)."""

from __future__ import annotations

import os
import sys

from energy_client.cli.errors import FAILED
from energy_client.cli.program import main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(FAILED)
