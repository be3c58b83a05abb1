"""``python -m orchestrator``: the ``breach`` command."""

from .commands import main

main()
