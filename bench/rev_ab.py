"""One bench script run on two revisions of the code in alternating turns: a figure's ratio.

    .venv/bin/python bench/rev_ab.py [--base REV] [--head REV] [--runs 6]
        [--figure REGEX] [--record] -- SCRIPT [ARGS...]

Each revision is checked out with `git worktree add --detach` into a temporary folder (`--head`
defaults to the working tree as it is, uncommitted changes included). SCRIPT (a path inside the
repository, e.g. bench/node_overhead.py) then runs in turns base, head, base, head, ... with the
revision's folder as working directory and first on PYTHONPATH, so the script and the
depth_fusion_ros / training packages it imports are that revision's (processes the script
starts, such as the node, inherit PYTHONPATH). Alternating spreads the load of other jobs on
this shared machine over both sides alike; a ratio within one such run is the comparison the
house style asks for.

`--figure` is a regular expression with one group, searched in each run's output: the number it
captures is the figure compared (default: node_overhead.py's median ms per pair). Prints every
run's figure, the median per revision and the ratio head / base; `--record` appends the table to
bench/RESULTS.md. The worktrees are removed at the end, also after a failure.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO_ROOT, record  # noqa: E402

DEFAULT_FIGURE = r"node overhead per pair[^\n]*median ([0-9.]+) ms"
WORKTREE = "worktree"  # --head's default: the checkout as it is, uncommitted changes included


class RevAbError(RuntimeError):
    """A revision, script or figure that cannot be compared; the message names it."""


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RevAbError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def resolve(repo: Path, rev: str) -> str:
    """The commit a revision names (short hash), or RevAbError naming the revision."""
    if rev == WORKTREE:
        return WORKTREE
    try:
        return _git(repo, "rev-parse", "--short", "--verify", f"{rev}^{{commit}}")
    except RevAbError as err:
        raise RevAbError(f"--base/--head {rev!r} is not a commit of {repo}") from err


def figure_of(output: str, pattern: str, label: str) -> float:
    """The number `pattern`'s first group captures in `output`; RevAbError if absent."""
    match = re.search(pattern, output)
    if match is None:
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise RevAbError(f"{label}: --figure {pattern!r} not found in the output; its end:\n{tail}")
    try:
        return float(match.group(1))
    except (IndexError, ValueError) as err:
        raise RevAbError(f"{label}: --figure {pattern!r} must capture a number in group 1, "
                         f"got {match.group(0)!r}") from err


def run_once(tree: Path, script: list[str], pattern: str, label: str) -> float:
    """Run the script in `tree` with `tree` first on PYTHONPATH; its figure."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, *script], cwd=tree, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise RevAbError(f"{label}: {' '.join(script)} failed with code {proc.returncode}:\n{tail}")
    return figure_of(proc.stdout, pattern, label)


def compare(repo: Path, base: str, head: str, script: list[str], runs: int,
            pattern: str) -> dict[str, list[float]]:
    """Figures per side ("base", "head") over `runs` alternating turns each."""
    if not script:
        raise RevAbError("no script given: put it after --, e.g. -- bench/node_overhead.py")
    if not (repo / script[0]).is_file():
        raise RevAbError(f"script {script[0]!r} is not a file of {repo}")
    figures: dict[str, list[float]] = {"base": [], "head": []}
    with tempfile.TemporaryDirectory(prefix="rev_ab_") as tmp:
        trees, added = {}, []
        try:
            for side, rev in (("base", base), ("head", head)):
                if rev == WORKTREE:
                    trees[side] = repo
                    continue
                trees[side] = Path(tmp) / side
                _git(repo, "worktree", "add", "--detach", str(trees[side]), rev)
                added.append(trees[side])
            for turn in range(runs):
                for side in ("base", "head"):
                    label = f"{side} ({base if side == 'base' else head}), run {turn + 1}"
                    figures[side].append(run_once(trees[side], script, pattern, label))
                    print(f"{label}: {figures[side][-1]:g}", flush=True)
        finally:
            for tree in added:
                subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force",
                                str(tree)], capture_output=True)
    return figures


def table(figures: dict[str, list[float]], base: str, head: str) -> str:
    """Markdown: every run's figure, the median per side and the ratio head / base."""
    rows = ["| revision | figures, in run order | median | head / base |", "|---|---|---:|---:|"]
    medians = {side: statistics.median(values) for side, values in figures.items()}
    for side, rev in (("base", base), ("head", head)):
        ratio = medians["head"] / medians["base"] if medians["base"] else float("nan")
        rows.append(f"| {side} {rev} | {', '.join(f'{v:g}' for v in figures[side])} | "
                    f"{medians[side]:g} | {'1.00' if side == 'base' else f'{ratio:.2f}'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    script = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="HEAD~1", help="revision A (default HEAD~1)")
    parser.add_argument("--head", default=WORKTREE,
                        help="revision B (default: the working tree as it is)")
    parser.add_argument("--runs", type=int, default=6, help="turns per revision (default 6)")
    parser.add_argument("--figure", default=DEFAULT_FIGURE,
                        help="regex whose group 1 is the number compared")
    parser.add_argument("--label", default="", help="what is compared, for the record")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args(own)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        re.compile(args.figure)
    except re.error as err:
        parser.error(f"--figure is not a regular expression: {err}")
    try:
        base, head = resolve(REPO_ROOT, args.base), resolve(REPO_ROOT, args.head)
        figures = compare(REPO_ROOT, base, head, script, args.runs, args.figure)
    except RevAbError as err:
        print(f"rev_ab: {err}", file=sys.stderr)
        return 2
    text = table(figures, base, head)
    if args.label:
        text = f"{args.label}\n\n{text}"
    if args.record:
        record("One benchmark on two revisions (alternating runs)", text,
               "bench/rev_ab.py " + " ".join(argv))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
