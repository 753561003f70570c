"""`python -m flowmend.cli`: the same as the `flowmend` command."""

from flowmend import console

raise SystemExit(console())
