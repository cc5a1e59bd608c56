"""``python -m aisetl`` runs the ``aisetl`` command."""

import sys

from aisetl.cli import main

sys.exit(main())
