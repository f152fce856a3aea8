"""The ablation's record in MLflow: the store's address and reachability, the ablation's
experiment and runs, the run logger, provenance tags, and the saved MLflow UI view."""
