"""gunicorn entry point: `gunicorn services.loyalty.wsgi:app`."""
from services.common.runtime import freeze_startup_objects
from services.loyalty.app import create_app

app = create_app()
freeze_startup_objects()
