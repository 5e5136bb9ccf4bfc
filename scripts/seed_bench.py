"""The seed's primitives (PyPI whatamithinking-aiotools), measured the way lockd-bench
measures LockCore's: uncontended and re-entrant RLock acquire+release, hand-offs per second
with 16 tasks contending, shield_scope enter+exit. Tasks come from the seed's own
create_shieldable_task factory. Prints one JSON object (medians of --rounds rounds, in ns and
per second)."""

import argparse
import asyncio
import json
import statistics
import time

from whatamithinking.aiotools import RLock, create_shieldable_task, shield_scope


async def uncontended(n):
    lock = RLock()
    start = time.perf_counter_ns()
    for _ in range(n):
        await lock.acquire()
        lock.release()
    return (time.perf_counter_ns() - start) / n


async def reentrant(n):
    lock = RLock()
    await lock.acquire()
    start = time.perf_counter_ns()
    for _ in range(n):
        await lock.acquire()
        lock.release()
    elapsed = time.perf_counter_ns() - start
    lock.release()
    return elapsed / n


async def handoffs(seconds, tasks=16):
    lock = RLock()
    count = 0
    stop = False

    async def worker():
        nonlocal count
        while not stop:
            async with lock:
                count += 1
                await asyncio.sleep(0)

    loop = asyncio.get_running_loop()
    workers = [loop.create_task(worker()) for _ in range(tasks)]
    await asyncio.sleep(0.05)
    before, start = count, time.perf_counter()
    await asyncio.sleep(seconds)
    rate = (count - before) / (time.perf_counter() - start)
    stop = True
    await asyncio.gather(*workers)
    return rate


async def shield(n):
    start = time.perf_counter_ns()
    for _ in range(n):
        with shield_scope():
            pass
    return (time.perf_counter_ns() - start) / n


async def main(args):
    asyncio.get_running_loop().set_task_factory(create_shieldable_task)
    rounds = {"uncontended_ns": [], "reentrant_ns": [], "handoffs_per_s": [], "shield_ns": []}
    for _ in range(args.rounds):
        rounds["uncontended_ns"].append(await uncontended(args.n))
        rounds["reentrant_ns"].append(await reentrant(args.n))
        rounds["handoffs_per_s"].append(await handoffs(args.seconds))
        rounds["shield_ns"].append(await shield(args.n))
    return {key: statistics.median(values) for key, values in rounds.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    loop.set_task_factory(create_shieldable_task)
    # The main coroutine itself must be a shieldable task for shield_scope to act.
    print(json.dumps(loop.run_until_complete(loop.create_task(main(args)))))
