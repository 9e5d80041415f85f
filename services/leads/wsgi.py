"""gunicorn entry point: `gunicorn services.leads.wsgi:app`."""
from services.common.runtime import freeze_startup_objects
from services.leads.app import create_app

app = create_app()
freeze_startup_objects()
