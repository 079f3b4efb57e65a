"""The entry point of the ``tokensmith`` command.

``main`` hands ``git-credential`` straight to the client's helper, before any command-line
machinery is imported (git runs it on every fetch and push); every
other command goes through the tree in ``main.py``, which loads the server only when one of
its commands runs.
"""

from __future__ import annotations

import sys


def main() -> None:
    arguments = sys.argv[1:]
    if len(arguments) == 2 and arguments[0] == "git-credential" and arguments[1] in ("get", "store", "erase"):
        from tokensmith.client import git_credential

        sys.exit(git_credential.main(arguments[1]))
    from tokensmith.cli.main import run

    sys.exit(run(arguments))
