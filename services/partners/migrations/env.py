from services.common.migrations import run_env
from services.partners.models import Base

run_env("partners", Base.metadata)
