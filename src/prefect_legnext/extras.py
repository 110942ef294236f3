"""The optional parts of the package and the one line that says how to install them.

A production worker installs only what the client, blocks, tasks and flows need; the
offline parts (the simulator's images, moto's S3 server, the demo's contact sheet)
come with the ``simulator`` extra.
"""

from __future__ import annotations

import importlib

from prefect_legnext.core.errors import MissingExtraError

SIMULATOR_EXTRA = "simulator"
INSTALL_SIMULATOR = f"pip install 'prefect-legnext[{SIMULATOR_EXTRA}]'"
# What each use needs of the extra: a module to import and what it is, for the message.
_SIMULATOR_MODULES = {"PIL.Image": "Pillow", "moto.server": "moto's S3 server"}


def require_simulator(what: str) -> None:
    """Check that the ``simulator`` extra is installed before `what` starts.

    Raises:
        MissingExtraError: a module of the extra cannot be imported; one line naming
            the extra and the command that installs it.
    """
    missing = []
    for module, name in _SIMULATOR_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(
            f"{what} needs the '{SIMULATOR_EXTRA}' extra ({' and '.join(missing)} not "
            f"installed): {INSTALL_SIMULATOR}"
        )
