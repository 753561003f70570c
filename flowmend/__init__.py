"""flowmend: test-time repair and optimisation of LLM workflows with typed AST edits."""

__version__ = "0.1.0"

from flowmend import _api  # noqa: E402 - the version first: _api imports nothing of ours

_api.public_api(__name__, globals(), {})
