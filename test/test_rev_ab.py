"""bench/rev_ab.py runs one script on two revisions in turns: each side imports its own code,
the figure is parsed, the worktrees go away afterwards, bad input is named."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.rev_ab import WORKTREE, RevAbError, compare, figure_of, resolve, table  # noqa: E402

SCRIPT = "import value\nprint('noise 1.5 ms')\nprint(f'node overhead per pair: median {value.MS} ms')\n"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose script reports value.MS: 2.0 at the first commit, 3.0 at the second,
    5.0 in the uncommitted working tree."""
    root = tmp_path / "repo"
    (root / "bench").mkdir(parents=True)
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.com")
    _git(root, "config", "user.name", "t")
    (root / "bench" / "report.py").write_text(SCRIPT)
    for ms in ("2.0", "3.0"):
        (root / "value.py").write_text(f"MS = {ms}\n")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", ms)
    (root / "value.py").write_text("MS = 5.0\n")
    return root


def _worktrees(repo: Path) -> int:
    return _git(repo, "worktree", "list").count("\n") + 1


def test_each_side_runs_its_own_code_in_turns(repo):
    base, head = resolve(repo, "HEAD~1"), resolve(repo, "HEAD")
    figures = compare(repo, base, head, ["bench/report.py"], 2,
                      r"node overhead per pair[^\n]*median ([0-9.]+) ms")
    assert figures == {"base": [2.0, 2.0], "head": [3.0, 3.0]}
    assert _worktrees(repo) == 1  # the temporary worktrees are gone
    text = table(figures, base, head)
    assert f"| base {base} | 2, 2 | 2 | 1.00 |" in text
    assert f"| head {head} | 3, 3 | 3 | 1.50 |" in text


def test_the_working_tree_side_includes_uncommitted_changes(repo):
    figures = compare(repo, resolve(repo, "HEAD"), WORKTREE, ["bench/report.py"], 1,
                      r"median ([0-9.]+) ms")
    assert figures == {"base": [3.0], "head": [5.0]}


def test_bad_input_is_named_and_leaves_no_worktree(repo):
    with pytest.raises(RevAbError, match="'nope' is not a commit"):
        resolve(repo, "nope")
    with pytest.raises(RevAbError, match="not a file"):
        compare(repo, resolve(repo, "HEAD"), WORKTREE, ["bench/missing.py"], 1, "x")
    with pytest.raises(RevAbError, match="no script given"):
        compare(repo, resolve(repo, "HEAD"), WORKTREE, [], 1, "x")
    with pytest.raises(RevAbError, match=r"base \(\w+\), run 1: --figure 'absent \(\.\*\)' not found"):
        compare(repo, resolve(repo, "HEAD~1"), resolve(repo, "HEAD"), ["bench/report.py"], 1,
                "absent (.*)")
    assert _worktrees(repo) == 1  # removed after the failure too
    (repo / "value.py").write_text("raise SystemExit('broken value module')\n")
    with pytest.raises(RevAbError, match="failed with code 1:\n.*broken value module"):
        compare(repo, resolve(repo, "HEAD"), WORKTREE, ["bench/report.py"], 1,
                r"median ([0-9.]+) ms")
    with pytest.raises(RevAbError, match="must capture a number"):
        figure_of("median fast ms", r"median (\w+) ms", "head")


def test_command_line_errors_exit_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "bench/rev_ab.py", "--base", "no-such-rev", "--",
                           "bench/node_overhead.py"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("rev_ab: --base/--head 'no-such-rev' is not a commit")
    proc = subprocess.run([sys.executable, "bench/rev_ab.py", "--runs", "0", "--",
                           "bench/node_overhead.py"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "--runs must be at least 1" in proc.stderr
