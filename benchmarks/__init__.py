"""Benchmarks of the harness: update speed (``speed``), throughput (``throughput``),
learning against references (``learning``), the sequential test's error rates
(``sequential_stats``) and the fault soak (``soak``). Nothing in agent/, ablations/,
analysis/ or reports/ imports this package."""
