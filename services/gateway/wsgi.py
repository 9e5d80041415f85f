"""gunicorn entry point: `gunicorn services.gateway.wsgi:app`."""
from services.common.runtime import freeze_startup_objects
from services.gateway.app import create_app

app = create_app()
freeze_startup_objects()
