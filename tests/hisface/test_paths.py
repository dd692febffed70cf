"""The province gateways' path families a HIS posts to: matched with their variable segments and embedded infno,
and the infno a path names must be the envelope's."""

from __future__ import annotations

import json

import pytest

from gateway.api.routes import PathTable, template_problem
from gateway.config import load_config_text
from gateway.platform.bundled import bundled_his_paths

from conftest import Gateway, fresh

DEFAULT = PathTable(list(bundled_his_paths()))


@pytest.mark.parametrize(
    ("path", "infno"),
    [
        ("/fsi/api/rsfComIfsService/callService", None),
        ("/fsi/api/rsfComIfsService/callService/1101", "1101"),
        ("/ebus/fsi/api/hsa/hgs/2207", "2207"),  # the national TIF path
        ("/ebus/44000010000/hsa/hgs/2203A", "2203A"),  # a paasid in the middle
        ("/ebus/prd/poc/hsa/hgs/9001", "9001"),  # an environment and a poc segment
        ("/power-csb/powercsb/1101", "1101"),  # Hunan
        ("/CSB/hsa-fsi-2207", "2207"),  # Jiangxi: the infno inside the segment
        ("/fsi/api/fileupload/upload", None),
        ("/fsi/api/fileupload/download", None),
    ],
)
def test_every_known_family_is_accepted_by_default(path: str, infno: str | None) -> None:
    match = DEFAULT.match(path)
    assert match is not None and match.infno == infno


@pytest.mark.parametrize(
    "path",
    [
        "/fsi/api/rsfComIfsService/callService/1101/x",
        "/ebus/hsa/hgs/1101",  # {**} is at least one segment
        "/CSB/hsa-fsi-",
        "/CSB/hsa-fsi-1101/extra",
        "/power-csb/powercsb/",
        "/fsi/api/fileupload/uploads",
    ],
)
def test_near_misses_are_no_service(path: str) -> None:
    assert DEFAULT.match(path) is None


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("fsi/x", "starts with /"),
        ("/a/{infno}/{infno}", "once"),
        ("/a/{id}", "placeholders are"),
        ("/a/x{*}", "whole segments"),
        ("/a/{infno", "placeholders are"),
    ],
)
def test_bad_templates_say_why(template: str, problem: str) -> None:
    assert problem in (template_problem(template) or "")


def test_a_bad_template_in_the_config_names_its_line() -> None:
    text = "development: true\nupstreams: [{name: s, host: 127.0.0.1, port: 1, transport: tcp}]\n"
    with pytest.raises(Exception) as info:
        load_config_text(text + "api:\n  paths: ['/ok/{infno}', '/a/{id}']\n", "y.yaml")
    assert "y.yaml:4" in str(info.value) and "placeholders are" in str(info.value)


@pytest.mark.parametrize("path", ["/power-csb/powercsb/1101", "/CSB/hsa-fsi-1101", "/ebus/44000010000/hsa/hgs/1101"])
async def test_province_paths_reach_the_platform(gateway: Gateway, path: str) -> None:
    sign_no = await gateway.sign_in()
    reply = await gateway.post(fresh("1101_query_request.json", sign_no=sign_no), path=path)
    assert reply.status == 200 and json.loads(reply.body)["output"]["baseinfo"]["psn_no"]
    wrong = await gateway.post(fresh("1101_query_request.json", sign_no=sign_no), path=path.replace("1101", "2207"))
    doc = json.loads(wrong.body)
    assert doc["gateway_error"] == "bad_envelope" and "body says '1101' but the URL names '2207'" in doc["err_msg"]
    assert [m.infno for m in gateway.sim.ledger.messages].count("1101") == 1


def test_the_path_families_are_the_profiles_data() -> None:
    """Each family comes from the bundled profile of the platform HIS code was written for, and is a template the
    HIS face accepts; the province profiles send upstream on the same path."""
    from gateway.platform.profile import BUNDLED, bundled_profile

    owners = {p: name for name in BUNDLED for p in bundled_profile(name).his_paths}
    assert owners == {
        "/fsi/api/rsfComIfsService/callService": "national",
        "/fsi/api/rsfComIfsService/callService/{infno}": "national",
        "/fsi/api/fileupload/upload": "national",
        "/fsi/api/fileupload/download": "national",
        "/ebus/{**}/hsa/hgs/{infno}": "tif",
        "/power-csb/powercsb/{infno}": "hunan",
        "/CSB/hsa-fsi-{infno}": "jiangxi",
    }
    assert list(bundled_his_paths()) == list(owners)
    assert all(template_problem(p) is None for p in owners)
    assert bundled_profile("hunan").path_for("1101", "/") == "/" and bundled_profile("hunan").path == (
        "/power-csb/powercsb/{infno}"
    )
    assert bundled_profile("jiangxi").path == "/CSB/hsa-fsi-{infno}"


async def test_profile_show_names_the_families() -> None:
    from conftest import ybgate_output

    code, out, _ = await ybgate_output("profile", "show", "jiangxi")
    assert code == 0 and "HIS paths accepted (his_paths): /CSB/hsa-fsi-{infno}" in out


def test_a_bad_path_in_a_profile_names_its_line() -> None:
    from gateway.errors import ConfigError
    from gateway.platform.profile import parse_profile

    with pytest.raises(ConfigError) as info:
        parse_profile("name: p\nhis_paths:\n  - /ok/{infno}\n  - 'no slash'\n", "p.yaml")
    assert any(line.startswith("p.yaml:4") and "starts with /" in line for line in info.value.lines())
