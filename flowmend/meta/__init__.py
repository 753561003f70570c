"""The offline outer loop: the only place besides bench/ that may read hidden tests."""

from flowmend import _api

_api.public_api(__name__, globals(), {})
