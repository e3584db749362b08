from __future__ import annotations

import sys

from edge_agent.reliability import SCENARIOS
from shared.reliability import main

sys.exit(main(SCENARIOS))
