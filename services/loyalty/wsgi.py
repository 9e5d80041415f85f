"""gunicorn entry point: `gunicorn services.loyalty.wsgi:app`."""
from services.loyalty.app import create_app

app = create_app()
