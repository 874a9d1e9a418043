"""The demo's closing answer reads compare's rows: which option each row is, and the answer."""

from rlvprm.demo.summary import answer, compare_section, options


def row(policy, method, n, accuracy, compute):
    return {"policy": policy, "method": method, "n": n, "accuracy": accuracy, "compute": compute, "prompts": 10,
            "policy_tokens": compute, "prm_tokens": 0.0, "training_tokens": 0.0}


RESULT = {
    "ns": [1, 2, 4], "aggregation": "mean", "prompts": 10, "served_prompts": 1000, "notes": [],
    "policies": {"base": {"rl": False}, "rl": {"rl": True}},
    "training": {"rl": {"trained_from": "base", "prm": "oracle", "total": 5000, "per_prompt": 5.0}},
    "tables": {"overall": [
        row("base", "greedy", 1, 0.5, 50), row("base", "pass@1", 1, 0.3, 50), row("base", "prm_best", 2, 0.4, 700),
        row("base", "prm_best", 4, 0.52, 1400), row("base", "self_consistency", 4, 0.45, 200),
        row("rl", "greedy", 1, 0.51, 55), row("rl", "pass@1", 1, 0.4, 55), row("rl", "prm_best", 4, 0.6, 1405),
    ]},
}


def test_rows_become_options_at_the_largest_n_only():
    got = [(r["option"], r["policy"], r["method"], r["n"]) for r in options(RESULT)]
    assert got == [("neither", "base", "greedy", 1), ("neither", "base", "pass@1", 1), ("test time", "base", "prm_best", 4),
                   ("test time", "base", "self_consistency", 4), ("train time", "rl", "greedy", 1),
                   ("train time", "rl", "pass@1", 1), ("both", "rl", "prm_best", 4)]


def test_the_answer_is_the_most_accurate_option_and_a_cheaper_one_close_to_it():
    a = answer(options(RESULT))
    assert (a["best"]["option"], a["best"]["accuracy"]) == ("both", 0.6) and a["cheaper"] is None
    close = answer([{"option": "test time", "accuracy": 0.52, "compute": 1400},
                    {"option": "train time", "accuracy": 0.51, "compute": 55},
                    {"option": "neither", "accuracy": 0.50, "compute": 50}])
    assert close["best"]["option"] == "test time" and close["cheaper"]["option"] == "neither"


def test_the_section_states_the_answer(tmp_path):
    text = "\n".join(compare_section(tmp_path, RESULT))
    assert "the most accurate option is **both** (rl, PRM Best-of-N (mean), N=4: 60.0% at 1,405 tokens" in text
    assert "| train time | rl | greedy | 1 | 51.0% | 55 |" in text and "| rl | `base` | oracle | 5,000 | 5.0 |" in text
