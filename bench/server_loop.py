"""A model (not a measurement) of llama-server's loop fed by N client threads: how full its batch steps are.

llama-server (`server_queue::start_loop`) starts a batch step as soon as a request is queued; a request that
finds no idle slot is deferred and re-queued when a slot is released. Each vse one-item prediction takes one
step (a few prompt tokens, one sampled token), and each client thread sends its next request a few
milliseconds after its reply. Step cost a + b x tokens, fitted to the server log read in RESULTS.md (one
sequence of 3-4 tokens: 240-280 ms; 8 sequences: 0.7-1.2 s): a = 0.19 s, b = 0.0188 s a token.

    python bench/server_loop.py            # 975 items (the recall-free score of unit 555), 8 slots

Prints items/s and the mean batch for several numbers in flight. A model: the lead's `bench/cold_start.py`
run is what counts.
"""

from __future__ import annotations

import argparse
import heapq
import random


def run(in_flight: int, slots: int, items: int, *, a: float = 0.19, b: float = 0.0188, seed: int = 0):
    """Seconds, batch steps and mean batch size for ``items`` one-step requests, ``in_flight`` at a time."""
    rng = random.Random(seed)
    t, sent, done, steps, batched = 0.0, 0, 0, 0, 0
    arrivals: list[tuple[float, int]] = []
    for i in range(min(in_flight, items)):
        heapq.heappush(arrivals, (rng.uniform(0.001, 0.010), i))
        sent += 1
    queue: list[tuple[float, int]] = []
    while done < items:
        while arrivals and arrivals[0][0] <= t:
            queue.append(heapq.heappop(arrivals))
        busy, queue = queue[:slots], queue[slots:]  # the rest are deferred until a slot is released
        if not busy:
            t = arrivals[0][0]
            continue
        t += a + b * sum(rng.randint(3, 8) for _ in busy)
        steps, batched = steps + 1, batched + len(busy)
        for _ in busy:
            done += 1
            if sent < items:  # the thread's next request, a few ms after its reply
                heapq.heappush(arrivals, (t + rng.uniform(0.001, 0.010), sent))
                sent += 1
    return t, steps, batched / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=975)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--in-flight", nargs="+", type=int, default=[8, 10, 12, 16, 24])
    args = ap.parse_args()
    print("| in flight | modelled s | items/s | batch steps | mean batch |")
    print("|---|---|---|---|---|")
    for n in args.in_flight:
        t, steps, mean = run(n, args.slots, args.items)
        print(f"| {n} | {t:.0f} | {args.items / t:.2f} | {steps} | {mean:.2f} |")


if __name__ == "__main__":
    main()
