"""Speed benchmarks behind `raid bench`. Each prints both sides and their ratio from one run,
so a figure holds even when the machine's speed drifts."""
