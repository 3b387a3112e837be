"""``python -m lpt_core.cli`` (and ``torchrun -m lpt_core.cli train ...``): the ``lpt`` command."""

import sys

from lpt_core.cli import main

sys.exit(main())
