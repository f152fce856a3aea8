"""What keeps an ablation whole across crashes, restarts and rival commands: retries on a
locked store, idempotent creation, run leases, and checkpoints."""
