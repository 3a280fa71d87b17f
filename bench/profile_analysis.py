"""Where the time of one analysis goes: python bench/profile_analysis.py TRIAL [--threads 1].

Runs poorinit's analysis of TRIAL in this process under cProfile (one thread
by default, so that the parts add up) and prints the share of each part of the
work: reading raw chunks through h5py, verifying their fletcher32 checksums,
moments, the histogram of the percentile census, copying kept gradient blocks,
gathering the order statistics, and everything else (opening files, listing
tensors, h5py's ordinary reads, judging). cProfile adds its own cost per
Python call, so the shares matter, not the seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

PARTS = (
    ("reading raw chunks (h5py read_direct_chunk)", "trial.py", "_raw_blocks"),
    ("verifying fletcher32 checksums (numpy)", "checksum.py", "fletcher32_matches"),
    ("moments (sum, centred sum of squares)", "stats.py", "of"),
    ("percentile census: histogram of bit patterns", "stats.py", "_histogram"),
    ("percentile census: copying kept blocks", "stats.py", "place"),
    ("order statistics: gathering the wanted bins", "stats.py", "_order_statistics"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trial")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from poorinit.analysis import evaluate
    from poorinit.params import RuleParams
    from poorinit.trial import Trial

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
    print(f"analysis of {args.trial} on {args.threads} thread(s), {total:.2f} s under cProfile:")
    for label, seconds in sorted(cumulative.items(), key=lambda item: -item[1]):
        print(f"  {seconds / total:6.1%}  {seconds:7.2f} s  {label}")


if __name__ == "__main__":
    main()
