"""A model whose health the test sets through the file $MODELHOST_TEST_HEALTH.

``ok``; ``sick`` (healthy returns False); ``sick PID`` (only in that process);
``raise``; ``hang`` (healthy takes 3 s). Each answer says which process gave it.
"""

import asyncio
import os
import time
from pathlib import Path

import numpy as np

from modelhost import hookimpl


def health() -> bool:
    words = Path(os.environ["MODELHOST_TEST_HEALTH"]).read_text().split()
    if words[0] == "raise":
        raise RuntimeError("the GPU is gone")
    if words[0] == "hang":
        time.sleep(3)
    return not (words[0] == "sick" and (len(words) == 1 or words[1] == str(os.getpid())))


class Health:
    @hookimpl
    def settings(self):
        return {"health_interval_s": 0.1}

    @hookimpl
    def healthy(self):
        return health()

    @hookimpl
    def predict(self, inputs):
        return np.full(len(inputs), os.getpid())


class AwaitingHealth(Health):
    @hookimpl
    async def healthy(self):
        await asyncio.sleep(0)
        return health()
