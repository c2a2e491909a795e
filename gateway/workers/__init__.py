"""Several worker processes behind each listener (``workers: N``).

With ``workers`` above 1, ``gateway run`` is a small supervisor (:mod:`gateway.workers.supervisor`)
that never imports the applications: it binds every listener's socket once
(:mod:`gateway.workers.sockets`), then runs N fresh ``gateway run`` processes that adopt those
sockets (:mod:`gateway.workers.inherit`) and report to it over a pipe
(:mod:`gateway.workers.link`): ready, heartbeats, their metrics and readiness. The supervisor
restarts a worker that dies or stops answering, replaces workers one at a time on SIGHUP, and
serves the admin listeners for the whole daemon.
"""

#: The environment variable that makes ``gateway run`` a worker: JSON from the supervisor.
WORKER_ENV = "GATEWAY_WORKER"
