"""``python -m sandbox``: run the partner sandbox (see ``--help`` for every knob)."""

from sandbox.cli import main

raise SystemExit(main())
