"""Commit the training campaign's state, keeping a session's submission small.

    .venv/bin/python tools/campaign_commit.py            # = make campaign-commit
    .venv/bin/python tools/campaign_commit.py --check    # only say how big this session's commits are

Why: a session's commits land only while their diffs, added up as text, stay under 256 MiB (and
their packed size under 512 MiB); a file added in one commit and removed in a later one counts
twice. Each epoch's backup of a 32-layer model is a new 4 MiB file that replaces the previous one,
so a commit per epoch costs about 9 MiB of diff text: a session that committed some sixty epochs
that way was refused whole, and its work was lost.

So this script commits the campaign folders as one "Campaign state" commit per stretch of work: when
the newest commit is already a campaign-state commit made in this session, it is amended, and the
backup files it replaced never reach the submission. A campaign-state commit of an earlier session
(one that may have landed) is never amended. "This session" began when the running campaign
started: the modification time of the PID file (``results/campaign.pid``), which ``make campaign`` writes.

Only the backup file that ``backup/training_metadata.json`` names is committed (a file being
written at this instant is left out), and the message says how far each run got. Afterwards, and
with ``--check``, it prints the size of every commit made since the session began, as
``git show --binary`` writes it, and their sum against the limit; it exits 1 when the sum is past
half of it.
"""
import argparse
import datetime
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PREFIX = "Campaign state:"
DIFF_LIMIT = 256 * 2**20  # bytes of diff text a session may submit
WARN_SHARE = 0.5  # past this share of the limit, stop committing campaign state this session


def git(*args):
    result = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def session_start(pid_file):
    """When this session's campaign started (the PID file's time), as a Unix time."""
    if not os.path.isfile(pid_file):
        raise SystemExit(f"{pid_file} not found: start the campaign with `make campaign` first "
                         "(its start marks the beginning of this session). Received: --pid-file=" + pid_file)
    return os.path.getmtime(pid_file)


def session_commits(since):
    """``(hash, subject, commit time)`` of the commits made after ``since``, newest first."""
    lines = git("log", "--format=%H%x09%ct%x09%s", "-n", "500").splitlines()
    commits = []
    for line in lines:
        sha, time, subject = line.split("\t", 2)
        if int(time) < int(since):
            break
        commits.append((sha, subject, int(time)))
    return commits


def diff_bytes(sha):
    """The commit's diff as text, binary files included (``git show --binary``), in bytes."""
    result = subprocess.run(["git", "show", "--binary", "--format=", sha], capture_output=True, check=True)
    return len(result.stdout)


def stray_backups(campaign):
    """Backup weights files the pointer does not name: one being written now, or one replaced."""
    from rir_keras import runs

    stray = []
    for folder, _, files in os.walk(campaign):
        if os.path.basename(folder) != runs.BACKUP_FOLDER:
            continue
        named = {os.path.basename(path) for path in runs.backup_files(os.path.dirname(folder))}
        stray += [os.path.join(folder, name) for name in files if name.startswith("weights-") and name not in named]
    return stray


def describe(campaign):
    """One clause per run with a finished epoch: ``resnet32 seed 0 9/30 (71.02%)``."""
    from rir_keras import runs
    from rir_keras.commands import campaign as campaign_lib

    parts = []
    for name, seed, run in campaign_lib.runs_of(campaign, campaign_lib.read_plan(campaign)):
        p = runs.progress(run)
        if p.epochs_done == 0:
            continue
        accuracy = p.test_accuracy if p.finished else p.last_accuracy
        parts.append(f"{name} seed {seed} {p.epochs_done}/{p.epochs_total}"
                     + (f" ({100 * accuracy:.2f}%{', finished' if p.finished else ''})" if accuracy else ""))
    return "; ".join(parts)


def commit(campaigns, since):
    campaigns = [c for c in campaigns if os.path.isfile(os.path.join(c, "campaign.json"))]
    if not campaigns:
        print("campaign state: no campaign has started yet")
        return
    git("add", "-A", "--", *campaigns)
    stray = [path for campaign in campaigns for path in stray_backups(campaign)]
    if stray:
        git("rm", "--cached", "--quiet", "--ignore-unmatch", "--", *stray)
    if not git("diff", "--cached", "--name-only", "--", *campaigns).strip():
        print("campaign state: nothing new to commit")
        return
    described = [f"{os.path.basename(c.rstrip('/'))}: {describe(c)}" for c in campaigns if describe(c)]
    message = (f"{PREFIX} {'; '.join(described) or 'started'}\n\nCommitted by tools/campaign_commit.py; the state "
               "resumes from each run's last finished epoch (test accuracy on the campaign's data in parentheses).")
    head = session_commits(since)[:1]
    amend = bool(head) and head[0][1].startswith(PREFIX)
    git("commit", "--quiet", *(["--amend"] if amend else []), "-m", message, "--", *campaigns)
    print(("amended" if amend else "committed") + f": {message.splitlines()[0]}")


def report(since):
    """Print this session's commits and their diff sizes; True when the sum is past the warning mark."""
    commits = session_commits(since)
    sizes = [diff_bytes(sha) for sha, _, _ in commits]
    started = datetime.datetime.fromtimestamp(since, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"this session's commits (since {started}): {len(commits)}")
    for (sha, subject, _), size in zip(commits, sizes):
        print(f"  {size / 2**20:8.2f} MiB  {sha[:9]} {subject[:70]}")
    total = sum(sizes)
    print(f"diff text in all: {total / 2**20:.1f} MiB of the {DIFF_LIMIT / 2**20:.0f} MiB a submission may hold")
    if total > WARN_SHARE * DIFF_LIMIT:
        print(f"past {WARN_SHARE:.0%} of the limit: commit no more backups this session, or squash the "
              "campaign-state commits into one (git rebase -i) before stopping", file=sys.stderr)
        return True
    return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--campaign", nargs="+", default=["results/table32-cifar10-fast", "results/table32-cifar10-long"],
                        help="the campaign folders, relative to the repository root")
    parser.add_argument("--pid-file", default="results/campaign.pid",
                        help="the PID file `make campaign` wrote: its time marks the beginning of this session")
    parser.add_argument("--repo", default=REPO, help="the repository (default: the one holding this script)")
    parser.add_argument("--check", action="store_true", help="commit nothing: only report this session's size")
    args = parser.parse_args(argv)
    os.chdir(args.repo)
    since = session_start(args.pid_file)
    if not args.check:
        commit(args.campaign, since)
    return 1 if report(since) else 0


if __name__ == "__main__":
    sys.exit(main())
