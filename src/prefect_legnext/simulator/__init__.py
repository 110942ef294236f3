"""An offline Legnext: a real HTTP server on loopback that behaves like the API.

Use it to develop and test flows without spending points (`LegnextSimulator`,
or ``prefect-legnext simulator`` on the command line).
"""

from prefect_legnext.simulator.config import Faults, SimulatorConfig
from prefect_legnext.simulator.server import LegnextSimulator, serve

__all__ = ["Faults", "LegnextSimulator", "SimulatorConfig", "serve"]
