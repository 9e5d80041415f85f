"""The import's pure rules: what a file and mapping must be, how a row becomes values; and the export's cells."""
from __future__ import annotations

import codecs

import pytest

from services.common.emails import normalize_email
from services.common.problems import Unprocessable
from services.contacts import export, import_rows, imports
from services.contacts.tags import TAG_RULE

MAPPING = {"E-mail": "email", "First name": "first_name", "Phone": "phone"}


def _refusal(data: bytes, mapping=MAPPING) -> dict:
    with pytest.raises(Unprocessable) as refused:
        imports.read_upload(data, mapping)
    return refused.value.extra["errors"]


# -- the file and its mapping ---------------------------------------------------------------------------------

def test_a_file_with_a_byte_order_mark_and_blank_rows_is_read_with_its_data_rows_counted():
    data = codecs.BOM_UTF8 + b"E-mail , First name,Phone\r\nann@example.com,Ann,\r\n\r\n,,\r\nbob@example.com,,\r\n"
    upload = imports.read_upload(data, {" E-mail": "email", "First name": "first_name"})
    assert upload.total_rows == 2
    assert upload.mapping == {"E-mail": "email", "First name": "first_name"}
    assert upload.columns == {"email": 0, "first_name": 1}
    assert not upload.text.startswith("\ufeff")
    # Row numbers are a spreadsheet's: the header is row 1, the blank rows keep their numbers.
    assert [number for number, _cells in imports.data_rows(upload.text)] == [2, 5]


@pytest.mark.parametrize("data, message", [
    ("E-mail\nbjörn@example.com\n".encode("latin-1"), "not UTF-8"),
    (b"", "no header row"),
    (b"\n\nann@example.com\n", "no header row"),
    (b'E-mail\n"ann@example.com\n', "not valid CSV"),
    (b"E-mail\nann@exa\x00mple.com\n", "NUL"),
])
def test_a_file_that_cannot_be_read_is_refused_naming_file(data, message):
    errors = _refusal(data, {"E-mail": "email"})
    assert list(errors) == ["file"] and message in errors["file"][0]


def test_more_rows_than_allowed_or_too_many_bytes_are_refused_naming_file(monkeypatch):
    monkeypatch.setattr(imports, "MAX_ROWS", 2)
    assert "more than 2 data rows" in _refusal(b"E-mail\na@x.example\nb@x.example\nc@x.example\n")["file"][0]
    assert imports.read_upload(b"E-mail\na@x.example\nb@x.example\n", {"E-mail": "email"}).total_rows == 2
    monkeypatch.setattr(imports, "MAX_FILE_BYTES", 10)
    assert "larger than" in _refusal(b"E-mail\na@x.example\n")["file"][0]


def test_the_mapping_is_checked_against_the_header_by_column():
    errors = _refusal(b"E-mail,Name,Name\nann@example.com,Ann,A\n",
                      {"Mail": "email", "Name": "first_name", "E-mail": "nickname"})
    assert errors["mapping"]["Mail"] == ["Not a column of the file's header row."]
    assert errors["mapping"]["Name"] == ["The header row has this column more than once."]
    assert errors["mapping"]["E-mail"][0].startswith("Unknown contact field 'nickname'")
    assert list(errors) == ["mapping"]


def test_email_must_be_mapped_and_a_field_only_once():
    errors = _refusal(b"First,Second\nAnn,Bob\n", {"First": "first_name", "Second": "first_name"})
    assert errors["mapping"]["_schema"] == ["Map a column to email: it is what rows are matched on."]
    assert errors["mapping"]["Second"] == ["first_name is already mapped from 'First'."]


def test_tags_and_attribute_targets_are_known_fields():
    upload = imports.read_upload(b"E-mail,Tags,Tier\nann@example.com,vip,gold\n",
                                 {"E-mail": "email", "Tags": "tags", "Tier": "attributes.tier"})
    assert imports.mapped_attributes(upload.mapping) == ["tier"]
    errors = _refusal(b"E-mail,Tier\nann@example.com,gold\n", {"E-mail": "email", "Tier": "attributes.Not A Name"})
    assert "Unknown contact field" in errors["mapping"]["Tier"][0]


# -- rows -----------------------------------------------------------------------------------------------------

def _reader(**definitions) -> import_rows.RowReader:
    return import_rows.RowReader(columns={"email": 0, "first_name": 1, "phone": 2, "tags": 3}, width=4,
                             definitions=definitions)


@pytest.mark.parametrize("address", [
    "Ann@Example.COM", "  ann.lee+tag@sub.example.org ", "ann@BÜCHER.example", "ａｎｎ@example.com",
    "ann@xn--bcher-kva.example", "x@[192.0.2.1]",
])
def test_the_email_key_is_exactly_normalize_email(address):
    reader = _reader()
    assert reader.email_key(address) == normalize_email(address)
    assert reader.email_key(address) == normalize_email(address)  # once more, from the domain cache


def test_a_row_gives_its_non_empty_trimmed_values_and_an_empty_cell_gives_nothing():
    values, errors = _reader().read([" Ann@Example.com ", "", " +1 555 0100 ", " VIP; b2b ,vip"])
    assert errors == []
    assert values == {"email": "Ann@Example.com", "email_normalized": "ann@example.com", "phone": "+1 555 0100",
                      "tags": ["b2b", "vip"]}


def test_bad_values_are_reported_by_field_with_the_apis_messages():
    values, errors = _reader().read(["not-an-address", "x" * 101, "call me!", "no spaces allowed"])
    assert dict(errors) == {"email": "Not a valid email address.", "first_name": "Length must be between 1 and 100.",
                            "phone": "Not a phone number.",
                            "tags": f"'no spaces allowed' is not a tag. {TAG_RULE}"}
    assert "email_normalized" not in values


def test_a_missing_address_and_cells_beyond_the_header_are_errors():
    _values, errors = _reader().read(["", "Ann", "", "", "stray"])
    assert errors == [(None, "The row has 5 cells; the header row has 4."),
                      ("email", "An e-mail address is required: rows are matched on it.")]
    assert _reader().read(["ann@example.com", "Ann", "", "", "  "])[1] == []  # empty trailing cells are fine


def test_an_attribute_without_a_definition_refuses_its_values():
    reader = import_rows.RowReader(columns={"email": 0, "attributes.tier": 1}, width=2)
    assert reader.read(["ann@example.com", "gold"])[1] == [
        ("attributes.tier", "No attribute is defined with this name (see /api/v1/contacts/attributes).")]


def test_a_repeated_address_is_refused_naming_the_row_that_had_it_first():
    reader = _reader()
    first_rows: dict[str, int] = {}
    checked = import_rows.check_chunk(reader, [(2, ["ann@example.com"]), (3, ["bob@example.com", "", "bad!"])],
                                  first_rows)
    assert [row["row"] for row in checked.rows] == [2] and checked.failed == 1
    later = import_rows.check_chunk(reader, [(7, ["ANN@example.com", "Ann"])], first_rows)
    assert later.rows == [] and later.errors == [
        {"row": 7, "field": "email",
         "message": "Row 2 has the same e-mail address; each address may appear once per file."}]


def test_resuming_rebuilds_the_addresses_seen_before_the_checkpoint():
    text = "E-mail\nann@example.com\nbad\nbob@example.com\nANN@example.com\n"
    reader = import_rows.reader_for(text, {"E-mail": "email"}, {})
    rows = imports.data_rows(text)
    first_rows = import_rows.resume_point(reader, rows, 3)
    assert first_rows == {"ann@example.com": 2, "bob@example.com": 4}
    assert import_rows.check_chunk(reader, list(rows), first_rows).errors[0]["message"].startswith("Row 2 ")


# -- the export's cells ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell, shown", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1 555", "'+1 555"), ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("Ann", "Ann"), ("a=b", "a=b"), ("", ""),
])
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_quote(cell, shown):
    assert export.neutralise(cell) == shown
