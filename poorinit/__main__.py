"""``python -m poorinit``."""

from .cli import main

raise SystemExit(main())
