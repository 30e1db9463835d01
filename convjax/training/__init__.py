"""Training: config checks, run assembly, the per-device steps, the loop, and its workdir."""
