"""Running the simulator: in a background thread (`LegnextSimulator`, for tests and
the demo) or in the foreground (`serve`, for the CLI)."""

from __future__ import annotations

from typing import Any

import httpx

from prefect_legnext.core.serving import BackgroundServer
from prefect_legnext.core.serving import serve as serve_app
from prefect_legnext.simulator.app import KeepRawSend, build_app
from prefect_legnext.simulator.config import Faults, SimulatorConfig, parse_fault_settings
from prefect_legnext.simulator.engine import Engine


def _app(config: SimulatorConfig) -> tuple[KeepRawSend, Engine]:
    engine = Engine(config)
    return KeepRawSend(build_app(engine)), engine


class LegnextSimulator:
    """An offline Legnext on loopback, running in a background thread.

    Example:
        ```python
        with LegnextSimulator(time_scale=0.001) as sim:
            client = LegnextClient(
                sim.api_key, base_url=sim.base_url, poll=PollPolicy(scale=0.001)
            )
            job = client.wait_for_job(client.diffusion(text="a red fox"))
        ```

    Args:
        config: full settings; keyword arguments override its fields.
        host: interface to bind (loopback by default).
        port: 0 picks a free port.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **overrides: Any,
    ) -> None:
        base = config or SimulatorConfig()
        # Overrides are validated like any setting (a plain-str api_key becomes a
        # SecretStr; inf, nan and out-of-bounds values are refused here, before start).
        # Only the fields `base` set are carried, so Faults keep their own fields_set.
        settings = {name: getattr(base, name) for name in base.model_fields_set}
        self.config = SimulatorConfig.model_validate({**settings, **overrides})
        self.host = host
        self.port = port
        self.base_url = ""
        self._server: BackgroundServer | None = None

    @property
    def api_key(self) -> str:
        return self.config.api_key.get_secret_value()

    def __enter__(self) -> LegnextSimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LegnextSimulator(base_url={self.base_url!r})"

    def start(self) -> None:
        app, engine = _app(self.config)
        self._server = BackgroundServer(app, "simulator", self.host, self.port)
        self.base_url = self._server.start()
        engine.base_url = self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    # -- conveniences for tests, benchmarks and the demo --------------------------------

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/_sim/stats", timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def jobs(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.base_url}/_sim/jobs", timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def set_faults(self, faults: dict[str, Faults | dict[str, Any]]) -> None:
        """Replace the fault settings, per endpoint name (``"*"`` for all, ``"files"``
        for output downloads). An endpoint's settings layer over ``"*"`` field by field
        (see `SimulatorConfig.faults_for`). An empty dict turns every fault off.

        Raises:
            ValueError: the settings are refused (nothing was changed); a
                `pydantic.ValidationError` for a bad value.
        """
        body = {
            # Only the fields the Faults sets: the others must still come from "*".
            name: spec.model_dump(exclude_unset=True) if isinstance(spec, Faults) else spec
            for name, spec in faults.items()
        }
        parse_fault_settings(body)  # refused here, with pydantic's message, before sending
        response = httpx.put(f"{self.base_url}/_sim/faults", json=body, timeout=10)
        if response.status_code == 400:
            raise ValueError(response.json()["error"])
        response.raise_for_status()


def serve(config: SimulatorConfig, host: str, port: int, on_ready: Any = None) -> None:
    """Run in the foreground until interrupted (Ctrl-C stops it cleanly)."""
    app, engine = _app(config)

    def ready(base_url: str) -> None:
        engine.base_url = base_url
        if on_ready is not None:
            on_ready(base_url)

    serve_app(app, host, port, on_ready=ready)
