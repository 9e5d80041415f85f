"""gunicorn entry point: `gunicorn services.leads.wsgi:app`."""
from services.leads.app import create_app

app = create_app()
