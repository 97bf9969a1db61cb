"""Does a reviser read its context? Teacher-forced probabilities over held-out problems that have
both a correct sample c and an incorrect one w: P(c | no attempt), P(c | c shown), P(c | w shown),
P(w | w shown), P(w | no attempt). A reviser that keeps a right answer has P(c | c) well above
P(c | w); one that ignores its context has them equal.

    .venv/bin/python bench/reviser_context_probe.py REVISER SAMPLES_DIR [NUM_PROBLEMS]

SAMPLES_DIR: a ``ttc sample`` output on held-out problems (e.g. ``--problem_seed 9000``).
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reviser_options import revision_probability  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from ttcompute.core.shards import ShardReader  # noqa: E402
from ttcompute.models.reviser import format_reviser_prompt  # noqa: E402


def main(ckpt: str, samples: str, n: int = 100) -> None:
    tok = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForCausalLM.from_pretrained(ckpt).eval()
    reader = ShardReader(samples)
    out = {k: [] for k in ["c_alone", "c_c", "c_w", "w_w", "w_alone"]}
    for row in reader.iter_rows(0, len(reader)):
        c = [t for t, ok in zip(row["completions"], row["correct"]) if ok and t.strip()]
        w = [t for t, ok in zip(row["completions"], row["correct"]) if not ok and t.strip()]
        if not c or not w:
            continue
        c, w, q = c[0], w[0], row["question"]
        for key, shown, text in [
            ("c_alone", [], c),
            ("c_c", [c], c),
            ("c_w", [w], c),
            ("w_w", [w], w),
            ("w_alone", [], w),
        ]:
            out[key].append(revision_probability(model, tok, format_reviser_prompt(q, shown), text))
        if len(out["c_alone"]) == n:
            break
    if not out["c_alone"]:
        sys.exit(f"{samples}: no problem has both a correct and an incorrect sample")
    print(ckpt, json.dumps({k: round(float(np.mean(v)), 3) for k, v in out.items()}), len(out["c_alone"]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 100)
