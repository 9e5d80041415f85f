from services.common.migrations import run_env
from services.loyalty.models import Base

run_env("loyalty", Base.metadata)
