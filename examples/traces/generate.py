#!/usr/bin/env python3
"""Writes the example traces of examples/traces/: one day (Monday 2026-03-02, UTC) at
one-minute resolution for each policy in policies/, with a daily load curve, noise,
a spike or two and a short monitoring gap. Seeded: the output is always the same.
Run from the repository root: python3 examples/traces/generate.py"""

import math
import random
from datetime import datetime, timedelta, timezone

START = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)
MINUTES = 24 * 60


def daily(minute, low, high, peak_hour=14.0):
    """A smooth day: lowest at night, highest at peak_hour (UTC)."""
    phase = (minute / 60.0 - peak_hour) / 24.0 * 2 * math.pi
    return low + (high - low) * (0.5 + 0.5 * math.cos(phase))


def write(name, columns, value):
    rng = random.Random(name)
    lines = ["time," + ",".join(columns)]
    for minute in range(MINUTES):
        at = START + timedelta(minutes=minute)
        cells = []
        for column in columns:
            v = value(minute, column, rng)
            cells.append("" if v is None else f"{v:.6g}")
        lines.append(at.strftime("%Y-%m-%dT%H:%M:%SZ") + "," + ",".join(cells))
    with open(f"examples/traces/{name}.csv", "w") as f:
        f.write("\n".join(lines) + "\n")


def gap(minute):
    # Monitoring is down 10:00-10:12 UTC in every trace.
    return 600 <= minute < 612


def frappe(minute, column, rng):
    if gap(minute):
        return None
    total = daily(minute, 380e6, 560e6) + rng.gauss(0, 15e6)
    if 690 <= minute < 760:  # a report run holds memory for an hour
        total += 350e6
    return total


def membrane(minute, column, rng):
    if gap(minute):
        return None
    cpu = daily(minute, 0.15, 0.55) + rng.gauss(0, 0.03)
    if 780 <= minute < 800:
        cpu += 0.6
    return max(cpu, 0.0)


def instant(minute, column, rng):
    if gap(minute):
        return None
    jobs = daily(minute, 4, 45) + rng.gauss(0, 3)
    if 540 <= minute < 560:
        jobs += 80
    return max(round(jobs), 0)


def queued(minute, column, rng):
    if gap(minute):
        return None
    return max(round(daily(minute, 1, 22, peak_hour=11.0) + rng.gauss(0, 1)), 0)


def runner(minute, column, rng):
    if gap(minute):
        return None
    return min(max(daily(minute, 0.2, 0.7) + rng.gauss(0, 0.04), 0.0), 1.0)


def gateway(minute, column, rng):
    if gap(minute):
        return None
    if column == "cpu":
        return max(daily(minute, 0.2, 0.8) + rng.gauss(0, 0.05), 0.0)
    return max(daily(minute, 0.5, 0.75, peak_hour=16.0) + rng.gauss(0, 0.02), 0.0)


def django(minute, column, rng):
    if gap(minute):
        return None
    if column == "rps":
        return max(daily(minute, 250, 1500, peak_hour=13.0) + rng.gauss(0, 40), 0.0)
    return max(daily(minute, 0.25, 0.45, peak_hour=13.0) + rng.gauss(0, 0.02), 0.05)


def app(minute, column, rng):
    if gap(minute):
        return None
    if column == "cpu":
        cpu = daily(minute, 0.15, 0.6, peak_hour=7.0) + rng.gauss(0, 0.03)
        if 900 <= minute < 960:  # an hour of heavy load in the evening (IST)
            cpu = 0.92 + rng.gauss(0, 0.02)
        return min(max(cpu, 0.0), 1.0)
    return min(max(daily(minute, 0.35, 0.6, peak_hour=7.0) + rng.gauss(0, 0.02), 0.0), 1.0)


write("frappe-gunicorn", ["memory"], frappe)
write("membrane-api", ["cpu"], membrane)
write("instant-tasks-worker", ["jobs"], instant)
write("queued-tasks-worker", ["required"], queued)
write("code-runner", ["job_space"], runner)
write("erp-gateway", ["cpu", "memory"], gateway)
write("django-web", ["rps", "p95"], django)
write("app-server", ["cpu", "memory"], app)
