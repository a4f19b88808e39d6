"""``python -m slmlab.cli``: the `slmlab` command."""

import sys

from slmlab.cli import main

sys.exit(main())
