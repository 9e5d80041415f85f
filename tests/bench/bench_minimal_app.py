"""The framework ceiling of the suite bench: one Flask view and nothing else, served like a service."""
from __future__ import annotations

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/api/v1/contacts/<contact_id>")
def contact(contact_id):
    """A fixed JSON body about the size of a contact, with no auth, database or schema in between."""
    return jsonify(id=contact_id, email="ada@engines.example", first_name="Ada", last_name="Lovelace",
                   company="Analytical Engines", job_title="CTO", phone=None, version=1)
