"""The demo report reads a continued policy's whole training record."""

from rlvprm.demo.report import sft_lineage


def test_sft_lineage_walks_init_info_earliest_first():
    first = {"read_steps": 600, "full_steps": 900, "flawed_steps": 0, "history": [{"stage": "read"}], "init_info": None}
    second = {"read_steps": 0, "full_steps": 0, "flawed_steps": 300, "history": [{"stage": "flawed"}], "init_info": first}
    assert [r["flawed_steps"] for r in sft_lineage(second)] == [0, 300]
    assert sft_lineage(first) == [first]
