"""Where the time of one analysis goes: python bench/profile_analysis.py TRIAL [--threads 2].

Runs poorinit's analysis of TRIAL in this process under cProfile and prints
the share of each part of the work: reading raw chunks through h5py,
verifying their fletcher32 checksums, moments, the histogram of the
percentile census, copying kept gradient blocks, gathering the order
statistics, and everything else (opening files, listing tensors, h5py's
ordinary reads, judging). With --threads 2 (the default) the analysis takes
the path a two-core run takes (each step's tensors read once into the shared
arena, poorinit/stats.py pooled_spread), but the work its threads would share
runs inline on this one thread, so that cProfile sees it and the parts add
up; --threads 1 is the one-core path. cProfile adds its own cost per Python
call, so the shares matter, not the seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

PARTS = (
    ("reading raw chunks (os.preadv, or h5py read_direct_chunk)", "trial.py", "_raw_blocks"),
    ("verifying fletcher32 checksums (numpy)", "checksum.py", "fletcher32_matches"),
    ("moments (sum, centred sum of squares)", "stats.py", "of"),
    ("percentile census: histogram of bit patterns", "stats.py", "_count_prefixes"),
    ("percentile census: copying kept blocks", "stats.py", "place"),
    ("order statistics: gathering the wanted bins", "stats.py", "_order_statistics"),
    ("order statistics: counting below and inside the sampled brackets", "stats.py", "_count_brackets"),
)


class _Inline:
    """An executor that runs each task at once on the calling thread (for cProfile)."""

    def submit(self, function, *args):  # type: ignore[no-untyped-def]
        from concurrent.futures import Future

        future: Future = Future()
        try:
            future.set_result(function(*args))
        except BaseException as error:  # noqa: BLE001 (handed to the caller, as an executor does)
            future.set_exception(error)
        return future


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trial")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from poorinit import parallel
    from poorinit.analysis import evaluate
    from poorinit.params import RuleParams
    from poorinit.trial import Trial

    parallel._executor = lambda size: _Inline()  # type: ignore[assignment]
    profile = cProfile.Profile()
    profile.enable()
    evaluate(Trial(args.trial), RuleParams.from_values(), threads=args.threads)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    cumulative = {}
    total = 0.0
    for (filename, _, function), (_, _, _, cum, _) in stats.items():
        if filename.endswith("analysis.py") and function == "evaluate":
            total = cum
        for label, file, name in PARTS:
            if filename.endswith(file) and function == name:
                cumulative[label] = cumulative.get(label, 0.0) + cum
    # The raw reads' cumulative time includes the verification they call.
    reading, checking = PARTS[0][0], PARTS[1][0]
    cumulative[reading] = cumulative.get(reading, 0.0) - cumulative.get(checking, 0.0)
    cumulative["everything else"] = total - sum(cumulative.values())
    how = "the two-thread path, run inline on one thread" if args.threads > 1 else "one thread"
    print(f"analysis of {args.trial} ({how}), {total:.2f} s under cProfile:")
    for label, seconds in sorted(cumulative.items(), key=lambda item: -item[1]):
        print(f"  {seconds / total:6.1%}  {seconds:7.2f} s  {label}")


if __name__ == "__main__":
    main()
