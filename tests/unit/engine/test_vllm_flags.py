"""Pass-through flags checked by the installed vLLM's own parser (in a child: nothing starts)."""

from __future__ import annotations

import os
import threading
import time

from engine.vllm_flags import check_in_child, explain

OPTIONS = ["--model", "--max-model-len", "--max-num-seqs", "--seed", "--dtype"]


def test_explain_names_each_unknown_flag_with_the_nearest() -> None:
    line = explain("unrecognized arguments: --modle x --max_num_seq=3 --zzzzzz", OPTIONS)
    assert "--modle (did you mean --model" in line
    assert "--max_num_seq (did you mean --max-num-seqs" in line
    assert "--zzzzzz" in line and "\n" not in line
    assert explain("argument --dtype: invalid choice: 'x'", OPTIONS).startswith("vLLM rejects the engine arguments")


def test_the_installed_vllm_parser_accepts_real_flags_and_catches_a_typo() -> None:
    base = ["--model", "/m", "--served-model-name", "m", "--max-num-seqs", "8", "--disable-uvicorn-access-log"]
    results: dict[str, tuple[bool, str | None]] = {}

    def check(name: str, args: list[str]) -> None:
        results[name] = check_in_child(args, environ=os.environ, timeout=240)

    cases = {
        "good": [*base, "--seed", "0", "--max_model_len=64", '--hf-overrides={"a":1}'],
        "typo": [*base, "--modle", "x", "--dtype", "float32"],
    }
    started = time.monotonic()
    threads = [threading.Thread(target=check, args=item) for item in cases.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["good"] == (True, None)
    checked, problem = results["typo"]
    assert checked and problem is not None and "unknown vLLM flag --modle (did you mean --model" in problem
    print(f"two checks in parallel: {time.monotonic() - started:.1f} s")
