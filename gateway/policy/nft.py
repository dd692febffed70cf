"""Applying the rendered table with the `nft` command: atomically, read back, rolled back, watched for drift.

The only I/O of the policy package, kept apart from the pure rendering in firewall.py. Blocking (nft answers
in milliseconds); the daemon calls it from a worker thread.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from gateway.policy.firewall import (
    FAMILY,
    TABLE,
    FirewallError,
    Observed,
    Ruleset,
    delete_batch,
    mismatch,
    observe,
    render,
)
from gateway.policy.model import Policy


class Nft:
    """The nft binary, optionally inside a network namespace (tests; a gateway in its own netns)."""

    def __init__(self, netns: str | None = None, binary: str = "nft", timeout: float = 10.0) -> None:
        self.prefix = ["ip", "netns", "exec", netns, binary] if netns else [binary]
        self.timeout = timeout

    def _run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(  # noqa: S603 - fixed argv, no shell; input is our own JSON
                [*self.prefix, *args], input=stdin, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FirewallError(f"cannot run nft: {exc}") from None

    def apply(self, batch: str) -> None:
        """One transaction: all of it or, on any error, none of it."""
        done = self._run(["-j", "-f", "-"], batch)
        if done.returncode != 0:
            raise FirewallError(f"nft refused the ruleset: {done.stderr.strip()[:500]}")

    def listing(self, *, text: bool = False) -> str | None:
        """The kernel's table as nft JSON (what drift checks read), or in nft's own text form for people."""
        done = self._run([*([] if text else ["-j"]), "list", "table", FAMILY, TABLE])
        if done.returncode != 0:
            if "No such file" in done.stderr or "does not exist" in done.stderr:
                return None
            raise FirewallError(f"nft cannot list the table: {done.stderr.strip()[:500]}")
        return done.stdout


def as_text(batch: str, binary: str = "nft", timeout: float = 10.0) -> str:
    """The rendered table in nft's own text form, as `nft list table` prints it.

    nft prints text only for a table the kernel holds, so the batch is loaded into a throwaway network namespace
    of a throwaway user namespace (no privilege needed, nothing on this host changes) and listed back there."""
    script = f"{binary} -j -f - && exec {binary} list table {FAMILY} {TABLE}"
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv; the script is ours, the input our own JSON
            ["unshare", "--user", "--map-root-user", "--net", "sh", "-c", script],  # noqa: S607
            input=batch,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FirewallError(f"cannot render the table as nft text: {exc}; --json prints it without nft") from None
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1:] or ["no reason given"]
        raise FirewallError(f"cannot render the table as nft text: {why[0][:300]}; --json prints it without nft")
    return done.stdout


@dataclass(frozen=True)
class Check:
    ok: bool
    problem: str | None
    seen: Observed


class Firewall:
    """Our table on one interface: apply (verified, with rollback), check for drift, remove."""

    def __init__(self, nft: Nft, interface: str) -> None:
        self.nft = nft
        self.interface = interface
        self.applied: Ruleset | None = None
        self.baseline: Observed | None = None

    def render(self, policy: Policy) -> Ruleset:
        return render(policy, self.interface)

    def apply(self, policy: Policy) -> Observed:
        """Replace the table with the one for `policy` and read it back. If the kernel then holds anything
        else, put back what was there before (our previous table, or none) and raise."""
        new = self.render(policy)
        self.nft.apply(new.text())
        seen = observe(self.nft.listing())
        why = mismatch(new, seen)
        if why is not None:
            self._rollback()
            raise FirewallError(f"read-back after apply differs ({why}); previous table restored")
        self.applied, self.baseline = new, seen
        return seen

    def _rollback(self) -> None:
        self.nft.apply(self.applied.text() if self.applied is not None else delete_batch())
        if self.applied is not None:
            self.baseline = observe(self.nft.listing())

    def check(self) -> Check:
        """Compare the kernel's table with what was applied: someone editing, flushing or deleting it is drift."""
        seen = observe(self.nft.listing())
        if self.applied is None or self.baseline is None:
            return Check(False, "nothing applied yet", seen)
        why = mismatch(self.applied, seen)
        if why is None and seen.fingerprint != self.baseline.fingerprint:
            why = "rule contents changed since they were applied"
        return Check(why is None, why, seen)

    def remove(self) -> None:
        self.nft.apply(delete_batch())
        self.applied = self.baseline = None
