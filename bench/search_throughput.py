"""Search overhead and PRM prefix reuse, each measured side by side in one process.

1. Beam search vs pure sampling, same backend (transformers, the shipped small policy), same problems:
   seconds per generated policy token of beam search (N beams, width 4, the PRM's scoring included)
   divided by that of sampling N full solutions per problem in one call. The issue's target is
   <= 1.5x. Beam search is also timed with the backend's prefix cache off, to show what it buys.
2. PRM scoring with reuse vs re-encoding: the exact sequence of PRM calls one beam search made is
   replayed on a fresh PRM with KV-prefix reuse and on one without; the scores must agree.

The PRM is the likelihood PRM over the small policy (what bench/prm_experiment.sh trains; its two
calibration numbers do not change the work). Runs alternate so machine load hits both alike; medians.

Usage: python bench/search_throughput.py [--problems 32] [--beams 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "ttcompute" / "checkpoints" / "policy_small"


class RecordingPRM:
    """Delegates to a PRM, timing every call and recording its requests."""

    def __init__(self, prm) -> None:
        self.prm, self.calls, self.seconds = prm, [], 0.0

    def __getattr__(self, name):
        return getattr(self.prm, name)

    def score(self, questions, steps):
        self.calls.append(([*questions], [list(s) for s in steps]))
        start = time.perf_counter()
        try:
            return self.prm.score(questions, steps)
        finally:
            self.seconds += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--beams", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from ttcompute.eval.search.beam_search import beam_search
    from ttcompute.models.generation import SamplingParams
    from ttcompute.models.hf_backend import TransformersBackend
    from ttcompute.models.likelihood_prm import LikelihoodPRM
    from ttcompute.tasks.arithmetic import generate_problems

    torch.manual_seed(0)
    problems = generate_problems(args.problems, seed=777)
    questions = [p.question for p in problems]
    prompts = [q + "\n" for q in questions]
    policy = TransformersBackend(str(POLICY), device="cpu")
    policy_no_cache = TransformersBackend(str(POLICY), device="cpu", enable_prefix_caching=False)

    def new_prm(reuse: bool = True):
        return LikelihoodPRM(
            policy.model,
            policy.tokenizer,
            step_separator="\n\n",
            weight=0.83,
            bias=0.19,
            reuse_prefixes=reuse,
        )

    sample_rate, beam_rate, beam_gen_rate, no_cache_rate = [], [], [], []
    recorded = None
    for repeat in range(args.repeats):
        start = time.perf_counter()
        outputs = policy.generate(prompts, SamplingParams(n=args.beams, max_tokens=160, seed=repeat))
        seconds = time.perf_counter() - start
        tokens = sum(c.num_tokens for row in outputs for c in row)
        sample_rate.append(seconds / tokens)

        for backend, rates in ((policy, beam_rate), (policy_no_cache, no_cache_rate)):
            prm = RecordingPRM(new_prm())
            start = time.perf_counter()
            outcomes = beam_search(
                questions,
                prompts,
                backend,
                prm,
                num_beams=args.beams,
                beam_width=4,
                seed=repeat,
                max_step_tokens=48,
            )
            seconds = time.perf_counter() - start
            tokens = sum(o.policy_tokens for o in outcomes)
            rates.append(seconds / tokens)
            if backend is policy:
                beam_gen_rate.append((seconds - prm.seconds) / tokens)
                recorded = recorded or prm.calls
        print(
            f"repeat {repeat}: sampling {sample_rate[-1] * 1e6:.1f} us/token, beam search "
            f"{beam_rate[-1] * 1e6:.1f} (generation alone {beam_gen_rate[-1] * 1e6:.1f}), "
            f"beam search without the prefix cache {no_cache_rate[-1] * 1e6:.1f}"
        )

    median = statistics.median
    print()
    print(f"Search overhead ({args.problems} problems, N={args.beams}, M=4; seconds per generated token):")
    print(
        f"  beam search (PRM included) / pure sampling     = {median(beam_rate) / median(sample_rate):.2f}x"
    )
    print(
        f"  beam search generation only / pure sampling    = {median(beam_gen_rate) / median(sample_rate):.2f}x"
    )
    print(
        f"  beam search, backend prefix cache off / on     = {median(no_cache_rate) / median(beam_rate):.2f}x"
    )

    # 2. Replay the PRM calls of one beam search with and without prefix reuse.
    timings = {True: [], False: []}
    encoded = {}
    scores = {}
    for _ in range(args.repeats):
        for reuse in (True, False):
            prm = new_prm(reuse)
            start = time.perf_counter()
            scores[reuse] = [prm.score(q, s) for q, s in recorded]
            timings[reuse].append(time.perf_counter() - start)
            encoded[reuse] = prm.num_tokens_encoded
    worst = max(
        abs(a - b)
        for call_on, call_off in zip(scores[True], scores[False])
        for row_on, row_off in zip(call_on, call_off)
        for a, b in zip(row_on, row_off)
    )
    print()
    print(
        f"PRM scoring of one beam search's {len(recorded)} calls ({sum(len(q) for q, _ in recorded)} requests):"
    )
    print(
        f"  tokens encoded: reuse {encoded[True]}, re-encoding {encoded[False]}  ({encoded[False] / encoded[True]:.1f}x)"
    )
    print(
        f"  time: re-encoding / reuse = {median(timings[False]) / median(timings[True]):.2f}x  (max score diff {worst:.1e})"
    )


if __name__ == "__main__":
    main()
