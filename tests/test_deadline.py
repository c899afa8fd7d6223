"""``within``: a time limit that cancels what it waits for, and never loses its caller's cancellation."""

import asyncio

import pytest

from modelhost.runtime.deadline import within


def test_the_result_in_time_and_a_timeout_that_cancels_what_it_waited_for():
    async def scenario():
        assert await within(5, asyncio.sleep(0, "in time")) == "in time"
        slow = asyncio.ensure_future(asyncio.sleep(60))
        with pytest.raises(asyncio.TimeoutError):
            await within(0.01, slow)
        await asyncio.sleep(0)
        assert slow.cancelled()

    asyncio.run(scenario())


def test_a_cancellation_arriving_as_the_awaited_finishes_is_not_lost():
    # asyncio.wait_for before Python 3.12 returns the result here instead (cpython issue 86296).
    async def scenario():
        awaited = asyncio.get_running_loop().create_future()
        waiting = asyncio.ensure_future(within(5, awaited))
        await asyncio.sleep(0)
        awaited.set_result("done")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())


def test_a_timeout_in_the_cleanup_of_a_cancelled_task_is_still_a_timeout():
    # A replica's worker is stopped in the finally of its cancelled task: its wait must still time out.
    async def cleanup():
        try:
            await asyncio.sleep(60)
        finally:
            with pytest.raises(asyncio.TimeoutError):
                await within(0.01, asyncio.sleep(60))
            return "timed out"

    async def scenario():
        task = asyncio.ensure_future(cleanup())
        await asyncio.sleep(0)
        task.cancel()
        assert await task == "timed out"

    asyncio.run(scenario())
