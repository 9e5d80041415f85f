from services.common.migrations import run_env
from services.gateway.models import Base

run_env("gateway", Base.metadata)
