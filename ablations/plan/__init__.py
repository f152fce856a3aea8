"""What an ablation will run, before anything is created: the spec and its runs, arms, task
suites, study files, and the duration estimate."""
