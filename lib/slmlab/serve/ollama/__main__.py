"""``python -m slmlab.serve.ollama``: run the Ollama-compatible server (see ``--help``)."""

import sys

from slmlab.serve.ollama.cli import main

sys.exit(main())
