"""The Legnext core: the endpoint table, request and response models, errors, the
retry and polling policies and the two clients. It imports nothing of Prefect (a
test imports it with Prefect made unimportable), so it can be used on its own.

Floors, from the bottom: ``models``/``responses`` -> ``errors`` -> ``endpoints`` ->
``retry``/``polling``/``masks`` -> ``client``. The Prefect layer
(`prefect_legnext.orchestration`) and the simulator (`prefect_legnext.simulator`)
import from here, never the other way.
"""

from prefect_legnext.core import _httpx  # noqa: F401  (first: httpx without its CLI)
