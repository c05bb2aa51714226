"""``python -m flowstudy.cli``: the ``flowstudy`` command."""

import sys

from flowstudy.cli.app import main

sys.exit(main())
