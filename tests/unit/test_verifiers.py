"""Verifier logic without Ray: answer extraction, math equivalence, code tests formats, the
scorer's guard against lying rewards, and load-time checks naming the file and row."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlsys.config import VerifierConfig
from rlsys.data.dataset import DatasetError, load_prompts
from rlsys.data.examples import code_rows, demo_rows, math_rows
from rlsys.loop.metrics import verifier_stats
from rlsys.models.tiny import build_char_tokenizer
from rlsys.verify import VERIFIERS, known_sources
from rlsys.verify.code_tests import extract_program, parse_tests
from rlsys.verify.details import VerifierDetails
from rlsys.verify.math_answer import extract_answer, math_equivalence
from rlsys.verify.scorer import run_verifier
from rlsys.verify.score_file import read_rows

TOK = build_char_tokenizer()


@pytest.mark.parametrize("response, answer", [
    ("so \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("\\boxed{\\left\\{1, 2\\right\\}}", "\\left\\{1, 2\\right\\}"),
    ("The answer is $\\dfrac{3}{4}$.", "\\dfrac{3}{4}"),
    ("Thus the final answer is: **42**", "42"),
    ("first \\boxed{3} then the answer is 4", "3"),
    ("nothing here", None),
])
def test_extract_answer(response, answer):
    assert extract_answer(response)[0] == answer


@pytest.mark.parametrize("response, truth, reward", [
    ("\\boxed{0.5}", "\\frac{1}{2}", 1.0),
    ("\\boxed{\\sqrt{18}}", "3\\sqrt{2}", 1.0),
    ("the answer is 1,000.", "1000", 1.0),
    ("\\boxed{x = 3}", "3", 1.0),
    ("\\boxed{\\{2, 1\\}}", "\\{1, 2\\}", 1.0),
    ("\\boxed{(x+1)^2}", "x^2+2x+1", 1.0),
    ("\\boxed{-3}", "3", 0.0),
    ("\\boxed{0.333}", "\\frac{1}{3}", 0.0),
    ("\\boxed{1} or \\boxed{2}", "2", 0.0),  # hedging
    ("\\boxed{5", "5", 0.0),  # unbalanced box and no "answer is"
])
def test_math_equivalence(response, truth, reward):
    assert math_equivalence(response, truth)[0] == reward


def test_extract_program_takes_last_python_block():
    assert extract_program("```python\na=1\n```\ntext\n```py\nb=2\n```") == "b=2\n"
    assert extract_program("print(1)") == "print(1)"
    assert extract_program("```bash\nrm -rf /\n```") == ""


def test_parse_tests_formats_and_errors():
    assert parse_tests(json.dumps({"inputs": ["1"], "outputs": ["2"]})).cases == [("1", "2")]
    assert parse_tests(json.dumps([{"input": "a", "output": "b"}])).cases == [("a", "b")]
    assert parse_tests("assert f(1) == 2").code == "assert f(1) == 2"
    for bad in ("[]", '{"inputs": [1], "outputs": []}', "assert (", '[{"input": "x"}]', "import math\nx = 1"):
        with pytest.raises((ValueError, SyntaxError)):
            parse_tests(bad)


def test_scorer_guards_errors_and_non_finite_rewards(monkeypatch):
    monkeypatch.setitem(VERIFIERS, "nan", lambda r, g: (float("nan"), {}))
    monkeypatch.setitem(VERIFIERS, "boom", lambda r, g: 1 / 0)
    for src in ("nan", "boom"):
        reward, d = run_verifier(src, "x", "y")
        assert reward == 0.0 and d.reason == "verifier error" and d.error and d.seconds >= 0
    stats = verifier_stats([d, VerifierDetails(seconds=1.0, timeout=True), VerifierDetails(error="lost", lost=True)])
    assert stats["reward/verifier_errors"] == 2 and stats["reward/verifier_timeouts"] == 1
    assert stats["reward/seconds_per_sample"] == pytest.approx((d.seconds + 1.0) / 3)  # a lost sample never ran: 0 s


def test_verifier_details_keep_the_verifiers_own_keys_and_flatten_as_before():
    reward, d = run_verifier("arithmetic", "it is 42", "42")
    assert reward == 1.0 and d.parsed == "42" and d.reason == "match" and d.error is None and not d.timeout
    assert d.to_dict() == {"parsed": "42", "reason": "match", "seconds": d.seconds}  # the rollout log's record
    timed_out = {"parsed": "print(1)", "total": 2, "reason": "test 1/2: timeout", "timeout": True, "seconds": 2.0}
    back = VerifierDetails.from_dict(timed_out)
    assert back.timeout and back.extra == {"parsed": "print(1)", "total": 2} and back.to_dict() == timed_out


def test_remote_is_known_only_with_an_url():
    assert "remote" not in known_sources(VerifierConfig())
    assert "remote" in known_sources(VerifierConfig(remote_url="http://127.0.0.1:1/score"))


def test_dataset_rows_with_bad_tests_fail_at_load_naming_the_row(tmp_path):
    rows = code_rows(4) + [{"prompt": "p", "ground_truth": "[]", "data_source": "code"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    with pytest.raises(DatasetError, match=r"c\.parquet row 4: ground_truth is not valid.*'code'"):
        load_prompts(tmp_path / "c.parquet", TOK, known_sources(), 200)


def test_builtin_examples_load_and_their_answers_verify(tmp_path):
    rows = math_rows(16)
    pq.write_table(pa.Table.from_pylist(rows + code_rows(8)), tmp_path / "ex.parquet")
    assert len(load_prompts(tmp_path / "ex.parquet", TOK, known_sources(), 200)) == 24
    for r in rows:  # the generated ground truth is what a correct boxed answer is checked against
        assert math_equivalence(f"\\boxed{{{r['ground_truth']}}}", r["ground_truth"])[0] == 1.0


def test_verify_input_rows_are_checked_with_file_and_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in demo_rows()))
    assert len(read_rows(str(path), known_sources())) == len(demo_rows())
    path.write_text(json.dumps({"data_source": "math", "response": "1"}) + "\n"
                    + json.dumps({"data_source": "nope", "response": "1", "ground_truth": "1"}) + "\n")
    with pytest.raises(DatasetError, match=r"in\.jsonl line 1: empty 'ground_truth'"):
        read_rows(str(path), known_sources())


def test_remote_endpoint_posts_json_and_rejects_bad_replies():
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from rlsys.verify import configure
    from rlsys.verify.remote import remote_endpoint

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = {"/ok": {"reward": float(body["response"] == body["ground_truth"]), "reason": "eq"},
                     "/bad": {"score": 1}}.get(self.path)
            if reply is None:
                self.send_error(500)
                return
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        configure(VerifierConfig(remote_url=url + "/ok", timeout_s=5))
        assert remote_endpoint("a", "a") == (1.0, {"reason": "eq"})
        assert remote_endpoint("a", "b")[0] == 0.0
        for path in ("/bad", "/missing"):
            configure(VerifierConfig(remote_url=url + path, timeout_s=5))
            reward, d = run_verifier("remote", "a", "a")
            assert reward == 0.0 and d.error, d
    finally:
        server.shutdown()
        configure(VerifierConfig())


@pytest.mark.parametrize("response, score", [
    ("\\boxed{41}", 0.1),  # well-formed, wrong: the format credit
    ("\\boxed{42}", 1.0),  # right: full marks, never the credit on top
    ("the answer is 41", 0.0),  # no \boxed{}: not the requested format
    ("\\boxed{41} or \\boxed{40}", 0.0),  # hedging earns nothing
    ("\\boxed{}", 0.0),  # nothing readable in the box
])
def test_math_format_score_credits_only_a_single_wrong_boxed_answer(response, score):
    from rlsys.verify.registry import configure

    configure(VerifierConfig(format_score=0.1))
    try:
        assert math_equivalence(response, "42")[0] == pytest.approx(score)
    finally:
        configure(VerifierConfig())
    assert math_equivalence("\\boxed{41}", "42")[0] == 0.0  # default format_score 0: wrong is wrong


@pytest.mark.parametrize("response, truth, score", [
    ("stone river apple", "stone river apple", 1.0),
    ("Stone, river; APPLE.", "stone river apple", 1.0),  # case and punctuation do not count
    ("stone apple river", "stone river apple", 2 * 2 / 6),  # matching blocks: "stone" + "river" (or "apple")
    ("Here: stone river apple", "stone river apple", 2 * 3 / 7),  # a preamble costs its length
    ("apple river stone", "stone river apple", 2 * 1 / 6),  # the unreversed list keeps one word in place
    ("", "stone river apple", 0.0),
])
def test_word_similarity_is_difflib_ratio_over_words(response, truth, score):
    assert VERIFIERS["similarity"](response, truth)[0] == pytest.approx(score)


def test_reverse_words_rows_score_one_for_their_own_answer(tmp_path):
    import pyarrow.parquet as pq

    from rlsys.data import reverse_words

    train, held_out = reverse_words.write_splits(tmp_path, 200, 20, max_words=5, seed=3)
    rows = pq.read_table(train).to_pylist()
    assert not {r["prompt"][0]["content"] for r in pq.read_table(held_out).to_pylist()} & \
        {r["prompt"][0]["content"] for r in rows}
    for r in rows:
        listed = r["prompt"][0]["content"].split(": ", 1)[1].split(".")[0].split()
        assert 3 <= len(listed) <= 5 and r["ground_truth"].split() == listed[::-1]
        assert VERIFIERS["similarity"](r["ground_truth"], r["ground_truth"])[0] == 1.0
