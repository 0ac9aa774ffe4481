"""``python -m statefulwebapp.plugin``: the same command as ``kubectl swa``."""

from statefulwebapp.plugin.cli import main

raise SystemExit(main())
