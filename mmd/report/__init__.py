"""Statistics and graphs from the journal (the classic manager's log analyzer, systemd-native).

Pure parts: ``headers`` (report kinds from added headers), ``aggregate`` (cumulative totals and
time buckets), ``state`` (what persists between runs), ``layout`` (RRD data sources),
``graphs`` (graph definitions), ``prometheus`` and ``html`` (text). ``run`` wires them to the
adapters (``mmd.adapters.journal_reader``, ``mmd.adapters.rrd``, ``mmd.adapters.report_files``).
"""
