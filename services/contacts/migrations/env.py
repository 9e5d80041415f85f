from services.common.migrations import run_env
from services.contacts.models import Base

run_env("contacts", Base.metadata)
