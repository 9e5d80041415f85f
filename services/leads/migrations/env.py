from services.common.migrations import run_env
from services.leads.models import Base

run_env("leads", Base.metadata)
