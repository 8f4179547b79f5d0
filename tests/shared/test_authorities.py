"""The authority register: the shipped 2011 list loads and checks out, a register's text survives
its own round trip, bad input is refused naming the row and column with nothing written, and a
correction is exact."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator import network
from shared.authorities import RegisterError, parse_register, register_of, shipped_register
from shared.errors import InvalidRequest

HEADER = "code,name,kind,region,lat,lon,population_2011,districts\n"
LAMBETH = "E09000022,Lambeth,london-borough,E12000007,51.46,-0.12,303000,\n"
KENT = "E10000016,Kent,county,E12000008,51.2,0.75,1464000,E07000105=Ashford;E07000106=Canterbury\n"


def test_the_shipped_list_round_trips_through_its_canonical_text() -> None:
    register = shipped_register()
    assert len(register.authorities) == 152 and register.years == (2011,)
    again = parse_register(register.to_csv())
    assert again == register and again.digest == register.digest
    assert register.authority("E10000014").name == "Hampshire"
    assert register.county_of("E07000084") == "E10000014"
    with pytest.raises(KeyError, match="E10000099"):
        register.authority("E10000099")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (HEADER + LAMBETH + "E12000007,London,london-borough,E12000007,51.5,-0.1,8200000,\n", "row 3, column code"),
        (HEADER + "E09000099X,Nowhere,london-borough,E12000007,51.5,-0.1,1000,\n", "row 2, column code"),
        (HEADER + LAMBETH + LAMBETH, "row 3, column code: E09000022 is listed twice"),
        (HEADER + LAMBETH.replace("303000", "0"), "row 2, column population_2011"),
        (HEADER + LAMBETH.replace("303000", "-5"), "row 2, column population_2011"),
        (HEADER + LAMBETH.replace("303000", "many"), "row 2, column population_2011"),
        (HEADER + LAMBETH.replace("london-borough", "county"), "row 2, column kind"),
        (HEADER + LAMBETH.replace("E12000007", "E12000010"), "row 2, column region"),
        (HEADER + LAMBETH.replace("51.46", "60.1"), "row 2, column lat"),
        (HEADER + LAMBETH.replace(",\n", ",E07000001=Somewhere\n"), "row 2, column districts"),
        (HEADER + KENT.replace("E07000106=", "E0700010="), "row 2, column districts"),
        (HEADER + KENT + KENT.replace("E10000016,Kent", "E10000030,Surrey"), "row 3, column districts"),
        (HEADER.replace("population_2011", "people"), "row 1, column people"),
        ("# a comment\n" + HEADER + LAMBETH + "E09000028,Southwark\n", "row 4, column -"),
    ],
)
def test_bad_rows_are_refused_by_row_and_column(text: str, where: str) -> None:
    with pytest.raises(RegisterError, match=rf"^authorities\.csv, {where}"):
        parse_register(text, source="authorities.csv")


def test_a_correction_changes_exactly_what_it_says() -> None:
    register = shipped_register()
    corrected = register.corrected("E10000014", population=1_317_800, districts={"E07000094": "City of Winchester"})
    hampshire = corrected.authority("E10000014")
    assert hampshire.population == 1_317_800
    assert dict((d.code, d.name) for d in hampshire.listed_districts)["E07000094"] == "City of Winchester"
    assert {c: a for c, a in corrected.authorities.items() if c != "E10000014"} == {
        c: a for c, a in register.authorities.items() if c != "E10000014"
    }
    assert parse_register(corrected.to_csv()) == corrected
    for code, options, message in [
        ("E10000099", {"population": 5}, "not an English upper-tier authority"),
        ("E10000014", {"population": 0}, "population: must be a whole number above 0"),
        ("E10000014", {"population": 5, "year": 2001}, "year: the register holds 2011"),
        ("E10000014", {"districts": {"E06000035": "Medway"}}, "not a district GSS code"),
        ("E10000014", {"districts": {"E07000110": "Maidstone"}}, "already listed under E10000016"),
        ("E06000035", {"districts": {"E07000999": "Rochester"}}, "is a unitary, which has no districts"),
        ("E10000014", {"population": 1_318_000}, "the register already says so"),
        ("E10000014", {}, "say what to correct"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            register.corrected(code, **options)  # type: ignore[arg-type]


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, " ".join((result.output + (str(result.exception) if result.exception else "")).split())


def test_network_init_seeds_the_signed_register_or_refuses_a_bad_file(tmp_path: Path) -> None:
    code, output = _cli("network", "init", str(tmp_path / "net"), "--name", "Test network")
    assert code == 0 and "152 authorities in its register" in output
    manifest = network.read(tmp_path / "net")
    assert register_of(manifest) == shipped_register() and manifest.authorities == shipped_register().to_csv()

    for name, text in (
        ("unknown", HEADER + LAMBETH + "E11000001,Greater Manchester,county,E12000002,53.5,-2.2,2600000,\n"),
        ("twice", HEADER + LAMBETH + LAMBETH),
        ("zero", HEADER + LAMBETH.replace("303000", "0")),
    ):
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        code, output = _cli("network", "init", str(tmp_path / name), "--authorities", str(path))
        assert code != 0 and f"{path}, row" in output, output
        assert not (tmp_path / name).exists()  # nothing written

    small = tmp_path / "small.csv"
    small.write_text(HEADER + LAMBETH + KENT)
    assert _cli("network", "init", str(tmp_path / "small"), "--authorities", str(small))[0] == 0
    assert list(network.read_register(tmp_path / "small").authorities) == ["E09000022", "E10000016"]


def test_a_founding_correction_is_refused_with_its_reason_and_nothing_written(tmp_path: Path) -> None:
    netdir = tmp_path / "net"
    network.init_network(netdir, name="Test network")
    version = network.read(netdir).version
    for args, reason in (
        (("E10000099", "--population", "5"), "not an English upper-tier authority"),
        (("E10000014", "--population", "0"), "must be a whole number above 0"),
        (("E10000014", "--district", "E07000084"), "is not CODE=NAME"),
    ):
        code, output = _cli("network", "set-authority", str(netdir), *args)
        assert code != 0 and reason in output, output
    assert network.read(netdir).version == version
    code, output = _cli("network", "set-authority", str(netdir), "E10000014", "--population", "1317800")
    assert code == 0, output
    assert network.read_register(netdir).authority("E10000014").population == 1_317_800
    assert network.read(netdir).version == version + 1


def test_a_manifest_whose_register_does_not_read_is_refused() -> None:
    from pydantic import ValidationError

    from shared.manifest import Manifest

    with pytest.raises(ValidationError, match="row 3, column code"):
        Manifest(network="n", version=1, ca_fingerprint="x", authorities=HEADER + LAMBETH + LAMBETH)


def test_a_member_authority_must_be_in_the_register(tmp_path: Path) -> None:
    from shared import governance
    from shared.governance import Change, Governance
    from shared.manifest import MEMBER_AUTHORITY, Party

    netdir = tmp_path / "net"
    network.init_network(netdir, name="Test network")
    governed = network.read(netdir).model_copy(update={"governance": Governance()})
    stranger = Party(id="W06000015", name="Cardiff", roles=(MEMBER_AUTHORITY,), signing_key="x", cert_fingerprint="y")
    with pytest.raises(InvalidRequest, match="'W06000015' is not an English upper-tier authority in the register"):
        governance.apply_change(governed, Change(action="add-member", party=stranger))
