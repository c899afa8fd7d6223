"""The models this server process serves, by name."""

import asyncio

from .errors import ModelNotFound


class ModelRepository:
    def __init__(self, runners):
        self.runners = {runner.name: runner for runner in runners}

    def names(self) -> list[str]:
        return list(self.runners)

    def get(self, name: str):
        try:
            return self.runners[name]
        except KeyError:
            raise ModelNotFound(f"model {name!r} is not served here") from None

    def get_ready(self, name: str):
        runner = self.get(name)
        runner.require_ready()
        return runner

    def all_ready(self) -> bool:
        return bool(self.runners) and all(runner.ready for runner in self.runners.values())

    async def start(self) -> None:
        await asyncio.gather(*(runner.start() for runner in self.runners.values()))

    async def stop(self) -> None:
        for runner in self.runners.values():
            await runner.stop()
