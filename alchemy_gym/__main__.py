"""``python -m alchemy_gym`` = the ``alchemy-gym`` command."""

import sys

from alchemy_gym.cli import main

sys.exit(main())
