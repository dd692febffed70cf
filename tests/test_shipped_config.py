"""The configuration that ships (packaging/ybgate.yaml, policies/) and the README's YAML blocks pass `ybgate check`
as installed, so docs, examples and code cannot drift (#23).

"As installed": the files placed under a scratch root that stands for /, with the certificate files taken from a
test PKI under the names the example uses, and the host-specific settings (interface, HIS group) pointed at what
this host has, as the operator edits them.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config_text
from gateway.crypto.testpki import generate_test_pki

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "packaging" / "ybgate.yaml"
README = ROOT / "README.md"


def readme_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README.read_text("utf-8"), re.S)


def install(text: str, root: Path) -> Path:
    """Place the example under root as the package does, with this host's interface and group."""
    certs = root / "etc/ybgate/certs"
    pki = root / "pki"
    generate_test_pki(pki)
    certs.mkdir(parents=True)
    for name, source in (
        ("sign.crt.pem", "client_sign.crt.pem"),
        ("sign.key.pem", "client_sign.key.pem"),
        ("enc.crt.pem", "client_enc.crt.pem"),
        ("enc.key.pem", "client_enc.key.pem"),
        ("ca.pem", "ca.crt.pem"),
    ):
        shutil.copy2(pki / source, certs / name)
    shutil.copytree(ROOT / "policies", root / "etc/ybgate/policies", ignore=shutil.ignore_patterns("*.md"))
    for path in ("/etc/ybgate/", "/var/lib/ybgate", "/run/ybgate"):
        text = text.replace(path, f"{root}{path}")
    text = text.replace("interface: eth1", "interface: lo")
    text = re.sub(r"socket_group: \S+", f"socket_group: {grp.getgrgid(os.getegid()).gr_name}", text)
    config = root / "etc/ybgate/ybgate.yaml"
    config.write_text(text, "utf-8")
    return config


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_shipped_config_passes_check_as_installed(tmp_path: Path) -> None:
    result = check(install(SHIPPED.read_text("utf-8"), tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("configuration ok")
    assert "upstream province-backup (backup): tlcp 10.1.3.3:8443" in result.stdout
    assert "policy " in result.stdout and "3 client(s), 2 upstream(s)" in result.stdout


def test_the_shipped_config_fails_check_with_nothing_edited() -> None:
    """Left as shipped on a host without the certificates, check names what is missing rather than passing."""
    if Path("/etc/ybgate/certs/sign.crt.pem").exists():
        pytest.skip("this host has an installed identity")
    result = check(SHIPPED)
    assert result.returncode == 1
    assert "identity.sign_cert: /etc/ybgate/certs/sign.crt.pem does not exist" in result.stderr


def test_readme_configuration_blocks_load() -> None:
    """Every YAML block of the README is a valid configuration (or a valid part of one)."""
    blocks = readme_blocks()
    assert len(blocks) >= 2
    whole = "".join(blocks[:2])  # Configuration's file needs Certificates' identity section for its TLCP upstream
    load_config_text(whole, "README.md")
    for block in blocks[2:]:
        load_config_text(block if "upstreams:" in block else whole + block, "README.md")


def test_readme_example_passes_check_as_installed(tmp_path: Path) -> None:
    """The Configuration block with the Certificates block's identity: the whole file an operator would copy."""
    main, identity = readme_blocks()[:2]
    assert main.lstrip().startswith("state_dir:") and identity.startswith("identity:")
    # The test PKI's keys are not encrypted: the operator leaves out key_password_file, as its comment says.
    identity = "".join(ln + "\n" for ln in identity.splitlines() if "key_password_file" not in ln)
    result = check(install(main + identity, tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("configuration ok")


def test_the_guides_configuration_blocks_load() -> None:
    """The YAML blocks of docs/ that are ybgate.yaml fragments load merged into the README's whole file (policy
    files, marked by their first comment, are checked by the policy tests)."""
    main, identity = readme_blocks()[:2]
    whole = yaml.safe_load(main + identity)
    checked = 0
    for doc in sorted((ROOT / "docs").glob("*.md")):
        for block in re.findall(r"```yaml\n(.*?)```", doc.read_text("utf-8"), re.S):
            if block.lstrip().startswith("# policies/"):
                continue
            merged = {**whole, **{k: {**whole.get(k, {}), **v} for k, v in yaml.safe_load(block).items()}}
            load_config_text(yaml.safe_dump(merged, allow_unicode=True), str(doc.relative_to(ROOT)))
            checked += 1
    assert checked >= 2
