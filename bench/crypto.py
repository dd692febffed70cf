"""Crypto speed next to `openssl speed` measured in the same run, as ratios.

    python bench/crypto.py [--seconds 2] [--json out.json]

SM2 sign/verify against `openssl speed sm2`; SM3 and SM4-CBC MB/s on 8 KiB blocks against `openssl speed -evp`.
OpenSSL 3.0's speed has no SM4-GCM, so GCM is printed next to SM4-CTR (GCM = CTR + GHASH: expect below 1x).
SM2 encrypt/decrypt have no `openssl speed` figure and are printed alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable

import figures

from gateway.crypto import SM2PrivateKey, sm3, sm4_cbc_encrypt, sm4_gcm_encrypt

BLOCK = 8192


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of fn over about `seconds`."""
    n, start = 0, time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        for _ in range(16):
            fn()
        n += 16
    return n / (time.perf_counter() - start)


def openssl_speed(args: list[str], seconds: float) -> str:
    out = subprocess.run(
        ["openssl", "speed", "-seconds", str(max(1, round(seconds))), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return out.stdout


def openssl_sm2(seconds: float) -> tuple[float, float]:
    line = next(ln for ln in openssl_speed(["sm2"], seconds).splitlines() if "SM2" in ln)
    nums = re.findall(r"[0-9.]+", line.split(")")[-1])
    return float(nums[-2]), float(nums[-1])


def openssl_mbps(cipher: str, seconds: float) -> float:
    text = openssl_speed(["-bytes", str(BLOCK), "-evp", cipher], seconds)
    line = next(ln for ln in text.splitlines() if ln.lower().startswith(cipher.lower()))
    return float(line.split()[-1].rstrip("k")) * 1000 / 1e6


def run(seconds: float = 2.0) -> list[dict[str, object]]:
    key = SM2PrivateKey.generate()
    pub = key.public_key()
    msg = b"x" * 100
    sig = key.sign(msg)
    ct = pub.encrypt(b"\x01\x01" + bytes(46))
    block = os.urandom(BLOCK)
    k16, iv, nonce = os.urandom(16), os.urandom(16), os.urandom(12)
    o_sign, o_verify = openssl_sm2(seconds)
    rows: list[dict[str, object]] = [
        {
            "figure": "SM2 sign, ops/s",
            "ybgate": rate(lambda: key.sign(msg), seconds),
            "baseline": o_sign,
            "baseline_name": "openssl speed sm2",
        },
        {
            "figure": "SM2 verify, ops/s",
            "ybgate": rate(lambda: pub.verify(sig, msg), seconds),
            "baseline": o_verify,
            "baseline_name": "openssl speed sm2",
        },
        {
            "figure": "SM2 encrypt 48 B, ops/s",
            "ybgate": rate(lambda: pub.encrypt(b"\x01" * 48), seconds),
            "baseline": None,
            "baseline_name": "-",
        },
        {
            "figure": "SM2 decrypt 48 B, ops/s",
            "ybgate": rate(lambda: key.decrypt(ct), seconds),
            "baseline": None,
            "baseline_name": "-",
        },
        {
            "figure": "SM3 8 KiB, MB/s",
            "ybgate": rate(lambda: sm3(block), seconds) * BLOCK / 1e6,
            "baseline": openssl_mbps("sm3", seconds),
            "baseline_name": "openssl speed -evp sm3",
        },
        {
            "figure": "SM4-CBC 8 KiB, MB/s",
            "ybgate": rate(lambda: sm4_cbc_encrypt(k16, iv, block), seconds) * BLOCK / 1e6,
            "baseline": openssl_mbps("sm4-cbc", seconds),
            "baseline_name": "openssl speed -evp sm4-cbc",
        },
        {
            "figure": "SM4-GCM 8 KiB, MB/s",
            "ybgate": rate(lambda: sm4_gcm_encrypt(k16, nonce, block, b"aad"), seconds) * BLOCK / 1e6,
            "baseline": openssl_mbps("sm4-ctr", seconds),
            "baseline_name": "openssl speed -evp sm4-ctr",
        },
    ]
    for row in rows:
        base = row["baseline"]
        row["ratio"] = (float(row["ybgate"]) / float(base)) if base else None  # type: ignore[arg-type]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    a = ap.parse_args()
    rows = run(a.seconds)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{subprocess.run(['openssl', 'version'], capture_output=True, text=True, check=False).stdout.strip()}"
    )
    print(f"{'figure':<26}{'ybgate':>12}{'baseline':>12}{'ratio':>8}  baseline")
    for r in rows:
        base = f"{r['baseline']:>12.1f}" if r["baseline"] else f"{'-':>12}"
        ratio = f"{r['ratio']:>7.2f}x" if r["ratio"] else f"{'-':>8}"
        print(f"{r['figure']:<26}{r['ybgate']:>12.1f}{base}{ratio}  {r['baseline_name']}")
    targets = {"SM2 sign, ops/s": "ratio>=0.8", "SM2 verify, ops/s": "ratio>=0.8"}
    figures.write(
        a.json,
        "crypto",
        [
            figures.Figure(
                str(r["figure"]),
                float(r["ybgate"]),  # type: ignore[arg-type]
                float(r["baseline"]) if r["baseline"] else None,  # type: ignore[arg-type]
                str(r["baseline_name"]),
                target=targets.get(str(r["figure"])),
            )
            for r in rows
        ],
    )


if __name__ == "__main__":
    main()
