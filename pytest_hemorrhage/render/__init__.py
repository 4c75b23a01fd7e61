"""Renderings of a :class:`~pytest_hemorrhage.report.Report`, shared by every front end.

- :mod:`.text`: the headline and the assertion message (front ends pass their own advice);
- :mod:`.markdown`: a Markdown table per check (CLI ``--markdown``, GitHub step summary, plugin report);
- :mod:`.html`: one self-contained page with plots;
- :mod:`.junit`: the JUnit property schema and the CLI's JUnit XML;
- :mod:`.terminal`: the one-line summary of a check in pytest's terminal summary.

Every renderer takes ``Report`` objects (a report's JSON form becomes one through
``Report.from_dict``). Nothing here imports the report module at run time, so the report's own
``to_text`` / ``to_markdown`` / ``to_html`` can delegate here without an import cycle.
"""
