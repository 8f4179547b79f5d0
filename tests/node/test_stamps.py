"""The records' write stamps (`node.stamps`): every write that changes a part's tables gives it a
new edition in the same transaction, whichever path wrote it (the ORM, SQL text, an import in place
or built and swapped in), and nothing else does: a statement that changes no row, a rolled-back
write, a write to another table."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node import stamps
from node.answers.movement import records_version
from node.client_records import PersonSealer, load_person_key
from node.imports.records import import_client_records, import_outcomes
from node.imports.staging import SWAPPED
from node.imports.supply import import_csv
from node.imports.swap import serving
from node.returns import Kpi1Return
from node.store import add_provider, data_version, ensure_authority
from node.synthetic.clients import write_client_csvs
from node.synthetic.supply import generate, write_csvs

MEDWAY = "E06000035"


def test_a_write_stamps_its_part_and_nothing_else_does(engine: Engine) -> None:
    assert stamps.edition(engine) == (None, None)  # a new store: nothing written yet
    add_provider(engine, provider_ref="P1", name="Medway Housing Society")  # the ORM
    supply, records = stamps.edition(engine)
    assert supply is not None and records is None
    assert data_version(engine) == (supply,) and records_version(engine) == (None,)

    with engine.begin() as conn:  # SQL text that changes no row
        assert conn.execute(text("UPDATE provider SET name = 'x' WHERE provider_ref = 'none'")).rowcount == 0
        conn.execute(text("DELETE FROM contract"))
    assert stamps.edition(engine) == (supply, None)

    with pytest.raises(RuntimeError), engine.begin() as conn:  # rolled back: the stamp with it
        conn.execute(text("UPDATE provider SET name = 'Medway Homes'"))
        raise RuntimeError
    assert stamps.edition(engine) == (supply, None)

    with engine.begin() as conn:
        conn.execute(text("UPDATE provider SET name = 'Medway Homes'"))
    changed = stamps.edition(engine)
    assert changed[0] not in (None, supply) and changed[1] is None

    ensure_authority(engine, authority_code=MEDWAY)  # not a stamped table
    assert stamps.edition(engine) == changed


def test_every_import_path_stamps_the_records_and_an_unchanged_file_does_not(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_authority(engine, authority_code=MEDWAY)
    supply = generate(MEDWAY, seed=3)
    for kind, path in write_csvs(supply, tmp_path / "supply").items():
        import_csv(engine, kind=kind, path=path)  # type: ignore[arg-type]
    after_supply = stamps.edition(engine)
    assert after_supply[0] is not None and after_supply[1] is None

    files = write_client_csvs(supply, tmp_path / "records", count=300)
    sealer = PersonSealer(load_person_key(tmp_path / "person.key"))
    import_client_records(engine, path=files["client-records"], sealer=sealer)  # in place
    first = stamps.edition(engine)
    assert first[0] == after_supply[0] and first[1] is not None
    import_client_records(engine, path=files["client-records"], sealer=sealer)  # the same file again
    assert stamps.edition(engine) == first
    assert import_outcomes(engine, path=files["outcomes"]).inserted > 0
    second = stamps.edition(engine)
    assert second[1] != first[1]

    # A correction, built beside the live table and swapped in where SQLite is served.
    monkeypatch.setattr("node.imports.staging.SWAP_ROWS", 1)
    with files["client-records"].open(newline="") as f:
        rows = list(csv.reader(f))
    column = rows[0].index("referral_source")
    rows[1][column] = "probation" if rows[1][column] != "probation" else "police"
    corrected = tmp_path / "corrected.csv"
    with corrected.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    with serving(engine):
        summary = import_client_records(engine, path=corrected, sealer=sealer)
    assert summary.updated == 1
    if engine.dialect.name == "sqlite":
        assert summary.written == SWAPPED
    third = stamps.edition(engine)
    assert third[0] == first[0] and third[1] not in (first[1], second[1])


def test_a_quarterly_return_corrected_through_the_orm_stamps_the_supply(engine: Engine, tmp_path: Path) -> None:
    ensure_authority(engine, authority_code=MEDWAY)
    for kind, path in write_csvs(generate(MEDWAY, seed=5), tmp_path).items():
        import_csv(engine, kind=kind, path=path)  # type: ignore[arg-type]
    with Session(engine) as session:
        service = session.exec(text("SELECT id FROM service LIMIT 1")).one()  # type: ignore[call-overload]
        session.add(Kpi1Return(service_id=service[0], quarter_start=date(2009, 4, 1), service_users=4, maintaining=3))
        session.commit()
    before = stamps.edition(engine)
    with Session(engine) as session:
        stored = session.exec(select(Kpi1Return)).one()
        stored.maintaining = 2
        session.add(stored)
        session.commit()
    after = stamps.edition(engine)
    assert after[0] != before[0] and after[1] == before[1]
