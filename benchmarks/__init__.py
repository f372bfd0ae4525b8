"""atlas-events benchmark suite: atlas-events against its peers, in one run.

Run it with ``python -m benchmarks`` (``--quick`` for a smoke run, ``--only
subs_1,threads_2`` for a subset); see ``docs/performance.md``.
"""
