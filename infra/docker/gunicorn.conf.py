"""gunicorn settings shared by every web container (`gunicorn -c /etc/crm/gunicorn.conf.py services.<svc>.wsgi:app`).

Every web container listens on 8080 inside its own network namespace; compose and Kubernetes scale by
adding containers; within one, the process and thread counts follow the same settings as `crm run`.
Any value here can be overridden without rebuilding through gunicorn's own GUNICORN_CMD_ARGS.
"""

from services.common.settings import web_concurrency

bind = "0.0.0.0:8080"
worker_class = "gthread"
# CRM_WEB_PROCESSES / CRM_WEB_THREADS, defaulting from the container's CPU count (as in `crm run`).
workers, threads = web_concurrency()
timeout = 30
graceful_timeout = 10
keepalive = 5
# The heartbeat file of each worker lives in memory: a container's overlay filesystem can stall the
# heartbeat under I/O load and get healthy workers killed.
worker_tmp_dir = "/dev/shm"
# No access log: the app writes one JSON line per request itself (services/common/web.py); a second line
# per request doubled the log volume piped through the supervisor.
accesslog = None
errorlog = "-"
