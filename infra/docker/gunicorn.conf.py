"""gunicorn settings shared by every web container (`gunicorn -c /etc/crm/gunicorn.conf.py services.<svc>.wsgi:app`).

Every web container listens on 8080 inside its own network namespace; compose and Kubernetes scale by
adding containers, so each container runs one process with threads (the same shape as `crm run`).
Any value here can be overridden without rebuilding through gunicorn's own GUNICORN_CMD_ARGS.
"""

bind = "0.0.0.0:8080"
worker_class = "gthread"
workers = 1
threads = 8
timeout = 30
graceful_timeout = 10
keepalive = 5
# The heartbeat file of each worker lives in memory: a container's overlay filesystem can stall the
# heartbeat under I/O load and get healthy workers killed.
worker_tmp_dir = "/dev/shm"
accesslog = "-"
errorlog = "-"
access_log_format = '{"event": "gunicorn.access", "request": "%(r)s", "status": %(s)s, "duration_us": %(D)s}'
