"""The op catalogue: every public function, importable from one place."""

from jitgrad.ops.creation import *  # noqa: F403
from jitgrad.ops.index import *  # noqa: F403
from jitgrad.ops.linalg import *  # noqa: F403
from jitgrad.ops.pointwise import *  # noqa: F403
from jitgrad.ops.reduce import *  # noqa: F403
from jitgrad.ops.scan import *  # noqa: F403
from jitgrad.ops.sort import *  # noqa: F403
from jitgrad.ops.shape import *  # noqa: F403
from jitgrad.ops import fused_backward  # noqa: E402,F401  registers the engine's fuser
