"""Speed, memory and statistical-efficiency measurements (not part of the test run).

Run ``python -m benchmarks`` (all) or ``python -m benchmarks overhead snapshot memory fuzz``.
Every figure is a ratio measured in one process on the same probes.
"""
