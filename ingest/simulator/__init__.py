"""A local stand-in for the Polygon / Massive crypto feed: the WebSocket protocol with its rough
edges, a REST twin, faults on demand, record and replay. Everything comes from one seeded
synthetic market, so any run can be reproduced and checked against ground truth."""

from ingest.simulator.config import SimulatorConfig
from ingest.simulator.market import DEFAULT_MARKET, Market, aggregate
from ingest.simulator.server import Simulator

__all__ = ["DEFAULT_MARKET", "Market", "Simulator", "SimulatorConfig", "aggregate"]
