"""The web dashboard: a Starlette app over the job registry (``mdp dashboard``)."""
