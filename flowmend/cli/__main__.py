"""`python -m flowmend.cli`: the same as the `flowmend` command."""

from flowmend.cli import main

raise SystemExit(main())
