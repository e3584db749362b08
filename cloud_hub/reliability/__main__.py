from __future__ import annotations

import sys

from cloud_hub.reliability import SCENARIOS
from shared.reliability import main

sys.exit(main(SCENARIOS))
