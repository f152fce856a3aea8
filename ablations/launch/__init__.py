"""Running an ablation's runs: the job and plan contract, the local and Ray launchers, GPU
sharing, the worker that trains one run, and progress. Nothing here imports torch or the
trainer until a launcher or the worker is loaded (``jobs`` and ``progress`` stay light)."""
