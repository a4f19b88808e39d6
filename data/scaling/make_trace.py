"""Write trace.csv: one synthetic day of chat traffic (requests per second, one row per minute). CC0.

A diurnal curve (quiet night, morning ramp, lunchtime and afternoon peaks), a 12-minute burst in the evening
(a newsletter went out), and ±10 % noise from a fixed seed. Run: python data/scaling/make_trace.py
"""

import math
import random
from pathlib import Path

random.seed(36)
rows = ["# synthetic chat traffic, one day, CC0: see README.md", "time_s,requests_per_second"]
for minute in range(24 * 60):
    hour = minute / 60
    day = 0.4 + 3.6 * math.exp(-((hour - 11.0) / 2.2) ** 2) + 4.5 * math.exp(-((hour - 15.5) / 2.6) ** 2)
    burst = 7.0 if 19 * 60 <= minute < 19 * 60 + 12 else 0.0
    rate = (day + burst) * (1 + random.uniform(-0.1, 0.1))
    rows.append(f"{minute * 60},{rate:.3f}")
Path(__file__).with_name("trace.csv").write_text("\n".join(rows) + "\n")
