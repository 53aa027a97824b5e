"""``market_data_pipeline.runners``: the original command line (``runners.cli``), kept over ``mdp``."""
