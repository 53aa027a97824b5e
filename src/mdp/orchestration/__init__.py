"""The original ``market_data_pipeline.orchestration`` package path, kept so its imports run.

Its modules (``orchestration.dag`` and its submodules, ``orchestration.runtime_orchestrator``) re-export
the real objects and warn with the module to import from now (see :mod:`mdp.compat`).
"""
