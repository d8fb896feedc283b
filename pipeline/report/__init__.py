"""The HTML pages: the run's report and the comparison of runs.

- ``html``: the one Jinja2 environment, figure embedding, ``render_page``; templates in ``templates/``
- ``formats``: how numbers are written (the templates' filters)
- ``context``: what the report reads from the stages' outputs
- ``glance``: the report's at-a-glance sentences and trust summary
- ``comparison``: the comparison page's ranking, leaderboard and sentences
"""
