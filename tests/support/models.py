"""What the Hypothesis state-machine tests share: their settings, sized by ``NEXIOS_MODEL_EXAMPLES``."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def model_settings(default_examples: int = 60, steps: int = 40) -> settings:
    """Settings of a state machine: ``$NEXIOS_MODEL_EXAMPLES`` examples (else the default), no deadline."""
    return settings(
        max_examples=int(os.environ.get("NEXIOS_MODEL_EXAMPLES", str(default_examples))),
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
