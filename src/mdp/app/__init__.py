"""The application: ``UnifiedRuntime`` over configured jobs, the job registry, metrics, run summaries and
the orchestration of ``mdp run`` (progress, heartbeats, signals)."""
