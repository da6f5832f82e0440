"""``python -m zotune``: the same as the ``zotune`` command (used by ``zotune bench`` for isolated runs)."""

import sys

from zotune.cli import main

sys.exit(main())
