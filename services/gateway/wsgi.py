"""gunicorn entry point: `gunicorn services.gateway.wsgi:app`."""
from services.gateway.app import create_app

app = create_app()
