"""Need indicators and grant allocations as signed reference data: each row checked with errors
naming the row and column, figures merged by authority, year and indicator, and manifests and
proposals without reference data signing exactly the bytes they always did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator import network
from shared import governance
from shared.authorities import shipped_register
from shared.errors import InvalidRequest
from shared.governance import Change, Governance, Proposal
from shared.manifest import Manifest
from shared.need import need_beside_supply
from shared.reference import GRANT, ReferenceError, indicator_of, parse_reference, population_share, reference_of

HEADER = "authority,year,indicator,value\n"
KENT, MEDWAY = "E10000016", "E06000035"


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, " ".join((result.output + (str(result.exception) if result.exception else "")).split())


def test_rows_read_into_figures_and_back_to_the_same_canonical_text() -> None:
    text = (
        HEADER + f'{MEDWAY},2009,dv_incidents,"4,612"\n{KENT},2009,{GRANT},£31086000\n{KENT},2008,dv_incidents,20565\n'
    )
    data = parse_reference(text, register=shipped_register())
    assert data.value(MEDWAY, 2009, "dv_incidents") == 4612
    assert data.value(KENT, 2009, GRANT) == 31_086_000
    assert data.years("dv_incidents") == (2008, 2009)
    canonical = data.to_csv()
    assert canonical.splitlines()[1:] == [
        f"{MEDWAY},2009,dv_incidents,4612",
        f"{KENT},2008,dv_incidents,20565",
        f"{KENT},2009,{GRANT},31086000",
    ]
    assert parse_reference(canonical) == data


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("E10000099,2009,dv_incidents,5\n", "row 2, column authority"),  # not in the register
        ("W06000015,2009,dv_incidents,5\n", "row 2, column authority"),  # not English upper tier
        (f"{KENT},09,dv_incidents,5\n", "row 2, column year"),
        (f"{KENT},2009,burglaries,5\n", "row 2, column indicator"),
        (f"{KENT},2009,dv_incidents,-5\n", "row 2, column value"),
        (f"{KENT},2009,dv_incidents,4.5\n", "row 2, column value"),
        (f"{KENT},2009,dv_incidents,5\n{KENT},2009,dv_incidents,6\n", "row 3, column indicator"),
        (f"{KENT},2009,dv_incidents\n", "row 2, column -"),
        (f"{KENT},2011,population:religion:none,5\n", "row 2, column indicator"),  # not a population field
        (f"{KENT},2011,population:sex:,5\n", "row 2, column indicator"),  # no category
        (f"{KENT},2011,population:sex:female:x,5\n", "row 2, column indicator"),
    ],
)
def test_a_bad_row_is_refused_naming_its_row_and_column(body: str, where: str) -> None:
    with pytest.raises(ReferenceError, match=f"grant.csv, {where}"):
        parse_reference(HEADER + body, source="grant.csv", register=shipped_register())


def test_population_rows_give_the_cag_s_share_from_the_latest_year_every_authority_has() -> None:
    data = parse_reference(
        HEADER
        + f"{KENT},2001,population:sex:female,690000\n{KENT},2001,population:sex:male,640000\n"
        + f"{MEDWAY},2001,population:sex:female,126000\n{MEDWAY},2001,population:sex:male,124000\n"
        + f"{KENT},2011,population:sex:female,709000\n{KENT},2011,population:sex:male,680300\n"
        + f"{KENT},2011,population:age_band:18-24,120000\n",
        register=shipped_register(),
    )
    meta = indicator_of("population:sex:female")
    assert meta is not None and not meta.need and meta.unit == "people"
    # Medway has no 2011 rows: the share is 2001's, over both authorities.
    assert population_share(data, [KENT, MEDWAY], "sex", "female") == (round(100 * 816000 / 1580000, 1), 2001)
    assert population_share(data, [KENT], "sex", "female") == (round(100 * 709000 / 1389300, 1), 2011)
    assert population_share(data, [KENT, MEDWAY], "age_band", "18-24") is None  # Medway has none
    assert population_share(data, [KENT], "ethnicity", "A") is None
    assert population_share(data, [KENT], "sex", "other") == (0.0, 2011)


def test_a_bad_header_is_refused() -> None:
    with pytest.raises(ReferenceError, match="row 1, column value: missing"):
        parse_reference("authority,year,indicator\n", source="x.csv")
    with pytest.raises(ReferenceError, match="row 1, column note: not a reference column"):
        parse_reference("authority,year,indicator,value,note\n", source="x.csv")


def test_figures_merge_by_authority_year_and_indicator() -> None:
    base = parse_reference(HEADER + f"{KENT},2009,dv_incidents,100\n{KENT},2009,{GRANT},30000000\n")
    merged = base.merged(parse_reference(HEADER + f"{KENT},2009,dv_incidents,120\n{MEDWAY},2009,dv_incidents,40\n"))
    assert merged.value(KENT, 2009, "dv_incidents") == 120
    assert merged.value(KENT, 2009, GRANT) == 30_000_000
    assert merged.value(MEDWAY, 2009, "dv_incidents") == 40
    with pytest.raises(InvalidRequest, match="already holds exactly these figures"):
        merged.merged(parse_reference(HEADER + f"{KENT},2009,dv_incidents,120\n"))


def test_a_manifest_without_reference_data_signs_the_bytes_it_always_did() -> None:
    manifest = Manifest(network="n", version=1, ca_fingerprint="x")
    assert b"reference" not in manifest.canonical_bytes()
    with_data = manifest.model_copy(update={"reference": HEADER + f"{KENT},2009,dv_incidents,5\n"})
    assert json.loads(with_data.canonical_bytes())["reference"].endswith("dv_incidents,5\n")
    change = Change(action="set-authority", authority=KENT, population=5)
    proposal = Proposal(network="n", applies_to=1, proposed_by=KENT, change=change)
    assert b"reference" not in proposal.canonical_bytes()


def test_a_manifest_whose_reference_data_does_not_read_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="row 2, column indicator"):
        Manifest(network="n", version=1, ca_fingerprint="x", reference=HEADER + f"{KENT},2009,nonsense,5\n")


def test_a_governed_change_adds_figures_and_approvers_see_the_rows(tmp_path: Path) -> None:
    netdir = tmp_path / "net"
    network.init_network(netdir, name="Test network")
    governed = network.read(netdir).model_copy(update={"governance": Governance()})
    change = Change(action="set-reference", reference=HEADER + f"{KENT},2009,{GRANT},31000000\n")
    candidate = governance.apply_change(governed, change)
    assert reference_of(candidate).value(KENT, 2009, GRANT) == 31_000_000
    assert f"+{KENT},2009,{GRANT},31000000" in governance.manifest_diff(governed, candidate)
    assert change.describe() == "reference data: 1 figures (sp_grant)"
    unknown = Change(action="set-reference", reference=HEADER + "E10000099,2009,sp_grant,5\n")
    with pytest.raises(InvalidRequest, match="row 2, column authority"):
        governance.apply_change(governed, unknown)


def test_founding_reference_data_from_the_command_line_and_nothing_written_on_error(tmp_path: Path) -> None:
    netdir = tmp_path / "net"
    network.init_network(netdir, name="Test network")
    version = network.read(netdir).version
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + f"{KENT},2009,dv_incidents,12\n{MEDWAY},2009,dv_incidents,twelve\n")
    code, output = _cli("network", "set-reference", str(netdir), str(bad))
    assert code != 0 and f"{bad}, row 3, column value" in output, output
    assert network.read(netdir).version == version and not len(network.read_reference(netdir))
    good = tmp_path / "good.csv"
    good.write_text("\ufeff" + HEADER + f"{KENT},2009,dv_incidents,12000\n{MEDWAY},2009,dv_incidents,3000\n")
    code, output = _cli("network", "set-reference", str(netdir), str(good))
    assert code == 0, output
    assert network.read(netdir).version == version + 1
    assert network.read_reference(netdir).value(MEDWAY, 2009, "dv_incidents") == 3000
    code, output = _cli("network", "reference", str(netdir))
    assert code == 0 and "Medway" in output and "3,000" in output, output


def test_need_beside_supply_from_a_joint_map_and_reference_data() -> None:
    from shared.kinds.supply import combine_supply_maps
    from shared.models import SupplyCell, SupplyMap

    def supply(code: str, population: int, refuge_units: int) -> SupplyMap:
        cell = SupplyCell(client_group=14, service_type="accommodation-based", units=refuge_units)
        return SupplyMap(authority=code, population=population, cells=(cell,))

    joint = combine_supply_maps([supply(KENT, 1_400_000, 60), supply(MEDWAY, 260_000, 20)])
    data = parse_reference(HEADER + f"{KENT},2009,dv_incidents,20000\n{MEDWAY},2009,dv_incidents,5000\n")
    need = need_beside_supply(joint, data, "dv_incidents")
    assert need.year == 2009 and need.client_groups == (14,)
    rows = {r.authority: r for r in need.rows}
    assert rows[KENT].per_1000_need == 3.0 and rows[MEDWAY].per_1000_need == 4.0
    assert need.cag_per_1000_need == round(80 * 1000 / 25000, 3)
    # Kent's share of need is 20/25 of 80 units = 64: four short; Medway four over.
    assert (rows[KENT].gap_need, rows[MEDWAY].gap_need) == (4, -4)
    assert rows[KENT].gap_population == round(80 * 1_400_000 / 1_660_000 - 60)
    with pytest.raises(InvalidRequest, match="need indicator 'sp_grant'"):
        need_beside_supply(joint, data, GRANT)
    partial = parse_reference(HEADER + f"{KENT},2009,dv_incidents,20000\n")
    assert need_beside_supply(joint, partial, "dv_incidents").no_figure == (MEDWAY,)
