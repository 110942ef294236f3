"""httpx without its command line. ``import httpx`` also imports its CLI (click, rich,
pygments: about half of httpx's import time) whenever those are installed, as they are
next to Prefect. The core never uses it, so it is kept out while httpx is first
imported; ``httpx.main`` then says to install ``httpx[cli]`` (the ``httpx`` command runs
in its own interpreter and is unaffected). Our decision, for the core's import time."""

from __future__ import annotations

import sys

if "httpx" not in sys.modules:
    _blocked = "httpx._main" not in sys.modules
    if _blocked:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]  # an ImportError
    try:
        import httpx  # noqa: F401
    finally:
        if _blocked:
            del sys.modules["httpx._main"]
