"""The memory / time / cost planner: ``estimate(config, gpu_id)`` -> ``Plan``, computed before
any GPU time is spent."""
