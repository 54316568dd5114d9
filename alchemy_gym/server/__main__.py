"""``python -m alchemy_gym.server``: serve symbolic Alchemy over dm_env_rpc."""

import sys

from alchemy_gym.server.cli import main

sys.exit(main())
