"""gunicorn entry point: `gunicorn services.partners.wsgi:app`."""
from services.common.runtime import freeze_startup_objects
from services.partners.app import create_app

app = create_app()
freeze_startup_objects()
