"""``python -m rvi ...`` (and ``torchrun ... -m rvi ...``) runs the ``rvi`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
