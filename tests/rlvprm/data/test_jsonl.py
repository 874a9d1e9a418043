"""The jsonl input contract: errors name file and line, ids unique, outputs never inputs, resumes strict."""

import pytest

from rlvprm.data.jsonl import (
    RecordError,
    ResumableWriter,
    check_out_not_input,
    check_unique_ids,
    read_jsonl,
)


def test_non_utf8_byte_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b\xff"}\n')
    rows = read_jsonl(path)
    assert next(rows) == (1, {"id": "a"})
    with pytest.raises(RecordError, match=rf"{path}:2: not UTF-8 text \(byte 0xff at column 10\)"):
        next(rows)


def test_malformed_lines_name_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a"}\n\n[1, 2]\n')
    with pytest.raises(RecordError, match=rf"{path}:3: expected a JSON object, got list"):
        list(read_jsonl(path))


def test_duplicate_ids_are_refused(tmp_path):
    rows = [(1, {"id": "a"}), (2, {}), (3, {"id": "a"})]
    with pytest.raises(RecordError, match=r"d.jsonl:3: record id 'a' appears on lines 1 and 3"):
        check_unique_ids(rows, tmp_path / "d.jsonl")
    check_unique_ids([(1, {"id": "a"}), (2, {})], "d.jsonl")  # line numbers stand in for missing ids


def test_out_is_never_an_input(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    with pytest.raises(RecordError, match="is the input file"):
        check_out_not_input(tmp_path / "." / "d.jsonl", data)
    (tmp_path / "link.jsonl").symlink_to(data)
    with pytest.raises(RecordError, match="is the input file"):
        check_out_not_input(tmp_path / "link.jsonl", data)
    with pytest.raises(RecordError, match="inside the input folder"):
        check_out_not_input(tmp_path / "sub" / "o.jsonl", tmp_path)
    check_out_not_input(tmp_path / "o.jsonl", data, None)


def test_resume_drops_only_a_torn_last_line(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text('{"id": "a"}\n{"id": "b"')
    with ResumableWriter(out) as w:
        assert w.done == {"a"}
    assert out.read_text() == '{"id": "a"}\n'


@pytest.mark.parametrize("text, reason", [
    ('{"id": "a"}\n{"id": \n{"id": "c"}\n', "line is not valid JSON"),
    ('{"id": "a"}\n{"score": 1}\n', "line has no 'id'"),
    (b'{"id": "a"}\n{"id": "\xff"}\n', "line is not valid JSON"),
])
def test_corrupt_existing_output_names_path_and_line(tmp_path, text, reason):
    out = tmp_path / "o.jsonl"
    out.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(RecordError, match=rf"{out}:2: existing output {reason}"):
        ResumableWriter(out)
