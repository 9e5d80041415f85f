"""gunicorn entry point: `gunicorn services.partners.wsgi:app`."""
from services.partners.app import create_app

app = create_app()
