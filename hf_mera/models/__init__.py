from .anymodality_llava import *  # noqa: F401,F403
from .anymodality_llava import __all__  # noqa: F401
