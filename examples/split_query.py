"""Run a query too costly for one 5-minute window by splitting it by date, on the emulator.

Run: ``python examples/split_query.py``. A year of purchases by country and platform costs
365 x 9 = 3285, over the 1000 window budget; :func:`run_split` runs it as 4 date chunks that
the scheduler packs into the budget, and merges them into the result the whole query gives.
"""

from __future__ import annotations

import asyncio
from datetime import date

from amplitude_async.chunks import run_split
from amplitude_async.client import AmplitudeClient
from amplitude_async.limits import Limits
from amplitude_async.queries import MONTHLY, EventSegmentation
from amplitude_async.split import plan_chunks
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator


async def main() -> None:
    start = date(2026, 1, 1)
    query = EventSegmentation(
        ["Purchase"],
        start,
        date(2026, 12, 31),
        metric="totals",
        interval=MONTHLY,
        group_by=["country", "platform"],
        limit=1000,
    )
    limits = Limits().scaled(0.01)  # a fast clock: the 5-minute window lasts 3 s
    print(f"cost {query.cost}: {len(plan_chunks(query, limits.cost_per_window))} chunks")
    dataset = SyntheticDataset(seed=1, users=500, days=365, start=start)
    async with (
        Emulator(dataset, limits=limits) as emulator,
        AmplitudeClient(
            emulator.api_key, emulator.secret_key, base_url=emulator.url, limits=limits
        ) as client,
    ):
        result = await run_split(client, query)
    for row in result.rows(query)[:12]:
        print(f"{row.label:<28} {row.x_value}  {row.value:g}")


if __name__ == "__main__":
    asyncio.run(main())
