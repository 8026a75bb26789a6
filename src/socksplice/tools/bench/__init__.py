"""``socksplice bench``: plain TCP, spliced and the AF_UNIX reference, side by side.

Modules: ``cases`` (the workload matrix), ``measuring`` (one run of one case on one path),
``running`` (interleaved A B C repeats in the demo's local cluster), ``summary`` (medians,
dispersion, ratios, CPU cost), ``table``/``files``/``plots`` (terminal, JSON + CSV, PNG) and
``main`` (the command line). See docs/benchmarks.md for a committed run.
"""
