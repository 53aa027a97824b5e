"""The web dashboard (``mdp dashboard``): a Starlette app over the job registry.

- :mod:`mdp.web.app`: the routes (pages, REST API, WebSockets) and the plotly.js bundle from its wheel;
- :mod:`mdp.web.feed`: one live feed per watched job (its registry row and its store's new bars);
- :mod:`mdp.web.configs`: validate, fence and start job files;
- :mod:`mdp.web.auth`: the token kept in ``$MDP_HOME``;
- :mod:`mdp.web.server`: bind, print the URL, serve with uvicorn;
- ``static/``: the pages and their scripts (the project's own code).
"""
