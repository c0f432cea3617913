"""Prints line coverage per target from the llvm-cov JSON export that `swift test` writes."""
import json
import os
import sys
from collections import defaultdict

def main(path: str) -> None:
    with open(path) as handle:
        export = json.load(handle)
    root = os.getcwd() + "/Sources/"
    totals = defaultdict(lambda: [0, 0])
    for data in export["data"]:
        for entry in data["files"]:
            name = entry["filename"]
            if not name.startswith(root):
                continue
            target = name[len(root):].split("/", 1)[0]
            lines = entry["summary"]["lines"]
            totals[target][0] += lines["covered"]
            totals[target][1] += lines["count"]
    print()
    print(f"{'target':<22}{'lines':>8}{'covered':>9}{'coverage':>10}")
    covered_all = count_all = 0
    for target in sorted(totals):
        covered, count = totals[target]
        covered_all += covered
        count_all += count
        print(f"{target:<22}{count:>8}{covered:>9}{100.0 * covered / max(count, 1):>9.1f}%")
    print(f"{'all':<22}{count_all:>8}{covered_all:>9}{100.0 * covered_all / max(count_all, 1):>9.1f}%")

if __name__ == "__main__":
    main(sys.argv[1])
