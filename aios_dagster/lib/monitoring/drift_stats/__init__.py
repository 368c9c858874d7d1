"""Evidently's data-drift verdicts, computed once per column with numpy/scipy.

One module per job: ``methods`` (Evidently's stat-test registry and default pick), ``config``
(settings and their validation), ``columns`` (column typing and the values tests see),
``stats`` (the five fast tests), ``evidently_tests`` (Evidently's own functions, for the rest),
``compute`` (the per-column work) and ``results``. Use it through
:mod:`aios_dagster.lib.monitoring.fast_drift`.
"""
