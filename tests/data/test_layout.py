import pytest

from kdbench.data.base import DatasetError, DatasetNotFoundError
from kdbench.data.layout import (
    list_folders,
    list_images,
    read_csv,
    read_json,
    read_lines,
    read_mapping,
    read_table,
)


def test_read_table_keeps_spaces_in_the_last_field(tmp_path):
    index = tmp_path / "images_variant_test.txt"
    index.write_text("1025794 707-320\n\n1340192 Cessna 172\n")
    rows = read_table(index, ("image_id", "variant"), "the split file")
    assert rows == [("1025794", "707-320"), ("1340192", "Cessna 172")]


def test_read_table_names_file_line_and_layout_of_a_bad_line(tmp_path):
    index = tmp_path / "images.txt"
    index.write_text("1 a/b.jpg\n2\n")
    with pytest.raises(DatasetError, match=r"images.txt, line 2: expected '<id> <path>', got '2'"):
        read_table(index, ("id", "path"), "the index")


def test_missing_index_file_says_what_was_expected(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"nope.txt does not exist; expected the index"):
        read_lines(tmp_path / "nope.txt", "the index")


def test_read_mapping_refuses_repeated_keys(tmp_path):
    index = tmp_path / "classes.txt"
    index.write_text("1 a\n2 b\n1 c\n")
    with pytest.raises(DatasetError, match=r"class_id '1' appears more than once"):
        read_mapping(index, ("class_id", "name"), "classes")
    index.write_text("1 a\n2 b c\n")
    assert read_mapping(index, ("class_id", "name"), "classes") == {"1": "a", "2": "b c"}


def test_read_csv_checks_the_header(tmp_path):
    table = tmp_path / "train.csv"
    table.write_text("filename,label\nx.jpg,n01\ny.jpg, n02 \n")
    assert read_csv(table, ("filename", "label"), "split") == [
        {"filename": "x.jpg", "label": "n01"},
        {"filename": "y.jpg", "label": "n02"},
    ]
    table.write_text("file,label\nx.jpg,n01\n")
    with pytest.raises(DatasetError, match=r"lacks column.*filename; expected a header line"):
        read_csv(table, ("filename", "label"), "split")


def test_read_json_reports_bad_json_and_missing_keys(tmp_path):
    path = tmp_path / "val.json"
    path.write_text("{")
    with pytest.raises(DatasetError, match=r"val.json is not valid JSON"):
        read_json(path, ("images",), "annotations")
    path.write_text("[]")
    with pytest.raises(DatasetError, match=r"holds a JSON list"):
        read_json(path, ("images",), "annotations")
    path.write_text('{"images": []}')
    with pytest.raises(DatasetError, match=r"lacks the key.*categories"):
        read_json(path, ("images", "categories"), "annotations")


def test_list_images_and_folders_are_sorted_and_skip_hidden_entries(tmp_path):
    for name in ("b.JPEG", "a.png", ".hidden.jpg", "notes.txt", "sub/c.jpg", ".cache/d.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPEG"]
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)]
    assert found == ["a.png", "b.JPEG", "sub/c.jpg"]
    assert [p.name for p in list_folders(tmp_path)] == ["sub"]
