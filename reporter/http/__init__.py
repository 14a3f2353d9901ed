"""The reporter's HTTP gateway: the JSON API, /metrics, /openapi.json and the dashboard page.

:func:`reporter.http.app.create_app` builds the Starlette application;
:class:`reporter.http.server.HttpServer` serves it with uvicorn inside the
reporter's asyncio loop, next to the gRPC server.
"""
