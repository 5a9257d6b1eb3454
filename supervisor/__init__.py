"""ringleader.supervisor: telemetry -> pure policy -> actuator.

* :mod:`.config`: the knobs (``PoolAutoscale``, ``WorkerAutoscale``, ``Rebalance``,
  ``SupervisorConfig``) and their semantics;
* :mod:`.observe`: frozen observations and the sampler that builds them;
* :mod:`.controllers`: the pool-size control laws, behind one interface;
* :mod:`.policy`: ``Policy.decide(observation) -> [Action]``, no I/O;
* :mod:`.supervisor`: the periodic task and the actuator that applies and logs;
* :mod:`.sim`: a virtual-time queueing model of a pool in front of a database of
  finite capacity, driving the same policy (tests and the rig's simulation mode).
"""
from .config import ConfigError, PoolAutoscale, Rebalance, SupervisorConfig, WorkerAutoscale
from .observe import ConnObs, Observation, PoolObs, Sampler, WorkerObs
from .policy import Action, Policy
from .supervisor import Actuator, Decision, Supervisor

__all__ = ["Action", "Actuator", "ConfigError", "ConnObs", "Decision", "Observation", "Policy",
           "PoolAutoscale", "PoolObs", "Rebalance", "Sampler", "Supervisor", "SupervisorConfig",
           "WorkerAutoscale", "WorkerObs"]
