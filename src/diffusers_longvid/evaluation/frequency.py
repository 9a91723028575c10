# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""AF (paper Eq. 6) lives in the product layer, `diffusers_longvid.frequency` (the T-RFlow calibration and the
trajectory decomposition need it); this module keeps the evaluation-side import path working."""

from ..frequency import *  # noqa: F401,F403
from ..frequency import __all__  # noqa: F401
