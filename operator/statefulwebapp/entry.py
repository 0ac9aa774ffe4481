"""Where the ``statefulwebapp-operator`` process starts: the official client kept out, then ``cli``.

The package installs the official ``kubernetes`` client for ``kubectl swa``
(``statefulwebapp.plugin``), and kopf imports that client at its own import whenever it is
installed (for its typing helpers, and to offer it as a way to log in): a client the operator
never uses, carried in its memory. So before anything imports kopf, the operator's process
refuses to import it; kopf then goes on as without it (it logs in through pykube-ng, as it
always has). Only this process does so: the tests, and ``kubectl swa``, import ``cli`` and the
client as they like.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

KEPT_OUT = ("kubernetes",)
"""Top-level packages the operator's process never imports."""


class KeepOut(MetaPathFinder):
    """Refuses the import of :data:`KEPT_OUT` and their modules, as if not installed."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        """Raise ``ModuleNotFoundError`` for a kept-out module; None (ask the others) else."""
        if fullname.split(".", 1)[0] in KEPT_OUT:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (kept out of the operator's process)",
                name=fullname,
            )
        return None


def main() -> int:
    """Keep the client out, then run the operator's command line (``cli.main``)."""
    if not any(isinstance(finder, KeepOut) for finder in sys.meta_path):
        sys.meta_path.insert(0, KeepOut())
    from statefulwebapp import cli  # noqa: PLC0415 (after the finder: cli imports kopf)

    return cli.main()
