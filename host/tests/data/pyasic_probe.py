"""Asks unmodified pyasic what it makes of a miner at an address, and
prints what it found and read as one JSON line (the last line of output).

Used by host/tests/esp_miner_compat.rs, inside a network namespace where
the appliance listens on 127.0.0.1:80:

    python pyasic_probe.py 127.0.0.1 [--wait-port 80] [--wait-hashing]

--wait-port waits until the port accepts connections; --wait-hashing
then waits until /api/system/info reports a non-zero hashRate, so the
read below sees a mining appliance. Both only wait: what is reported is
what pyasic itself read.
"""

import argparse
import asyncio
import json
import socket
import sys
import time
import urllib.request
import warnings


def wait_port(ip: str, port: int, secs: float) -> bool:
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ip, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def wait_hashing(ip: str, secs: float) -> bool:
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{ip}/api/system/info", timeout=2) as r:
                if float(json.load(r).get("hashRate", 0)) > 0:
                    return True
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    return False


def hashrate_hs(rate):
    """A pyasic hashrate (rate in its unit) in H/s."""
    if rate is None:
        return None
    return float(rate.rate) * int(rate.unit)


async def probe(ip: str) -> dict:
    import pyasic

    out: dict = {"pyasic": pyasic.__version__, "ip": ip}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        miner = await pyasic.get_miner(ip)
        out["found"] = miner is not None
        if miner is not None and type(miner).__name__ != "UnknownMiner":
            out["type"] = type(miner).__name__
            out["make"] = None if miner.make is None else str(miner.make)
            out["model"] = miner.model
            data = await miner.get_data()
            out["hashrate"] = None if data.hashrate is None else repr(data.hashrate)
            out["hashrate_hs"] = hashrate_hs(data.hashrate)
            out["wattage"] = data.wattage
            out["efficiency_j_per_th"] = data.efficiency_fract
            out["uptime"] = data.uptime
            out["hostname"] = data.hostname
            out["fw_ver"] = data.fw_ver
            out["hashboards"] = [
                {
                    "chip_temp": b.chip_temp,
                    "temp": b.temp,
                    "chips": b.chips,
                    "voltage": b.voltage,
                    "hashrate_hs": hashrate_hs(b.hashrate),
                }
                for b in data.hashboards
            ]
            out["temperature_avg"] = data.temperature_avg
            out["fans"] = [f.speed for f in data.fans]
            config = await miner.get_config()
            out["pools"] = [
                {"url": p.url, "user": p.user}
                for group in config.pools.groups
                for p in group.pools
            ]
        elif miner is not None:
            out["type"] = "UnknownMiner"
    out["warnings"] = [str(w.message) for w in caught]
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("ip")
    parser.add_argument("--wait-port", type=int)
    parser.add_argument("--wait-hashing", action="store_true")
    parser.add_argument("--wait-secs", type=float, default=60.0)
    args = parser.parse_args()
    if args.wait_port and not wait_port(args.ip, args.wait_port, args.wait_secs):
        print(json.dumps({"error": f"nothing listens on {args.ip}:{args.wait_port}"}))
        return 1
    if args.wait_hashing and not wait_hashing(args.ip, args.wait_secs):
        print(json.dumps({"error": "the appliance reported no hashrate in time"}))
        return 1
    print(json.dumps(asyncio.run(probe(args.ip))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
