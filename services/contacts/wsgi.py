"""gunicorn entry point: `gunicorn services.contacts.wsgi:app`."""
from services.common.runtime import freeze_startup_objects
from services.contacts.app import create_app

app = create_app()
freeze_startup_objects()
