"""``python -m alchemy_gym`` = the ``alchemy-gym`` command."""

import sys

try:
    from alchemy_gym.cli import main
except KeyboardInterrupt:  # Ctrl-C while the package loads: quiet, as in the commands
    sys.exit(130)

sys.exit(main())
