"""A campaign: the runs of ``rir-keras reproduce`` in one folder, and what they add up to.

``OUTPUT/campaign.json`` holds the plan (table, models, seeds, recipe, dataset); each run lives in
``OUTPUT/MODEL/seedN`` (see ``rir_keras.runs``). `results_table` sets the finished runs beside the
paper's figures, `comparison_table` several campaigns side by side; `status` tells how far each run
got and how long the rest will take.
"""
import math
import os
import statistics

from rir_keras import markdown, runs
from rir_keras.applications import registry


def runs_of(folder, plan):
    """``(model, seed, run folder)`` of every run a campaign plans, in training order."""
    return [(name, seed, os.path.join(folder, name, f"seed{seed}")) for seed in plan["seeds"] for name in plan["models"]]


def mean_and_spread(values):
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def finished_results(folder, plan, name):
    """The results of every finished run of model ``name`` in the campaign in ``folder``, seed by seed."""
    return [runs.read_json(os.path.join(run, "results.json")) for model, _, run in runs_of(folder, plan)
            if model == name and runs.progress(run).finished]


def ordered_models(table, names):
    """``names`` in the paper's order of ``table`` (Table 1: CNN, ResNet, ResNet Init, RiR), others after."""
    ordered = [name for name in registry.group_members(table) if name in names]
    return ordered + [name for name in names if name not in ordered]


def summary(name, finished, family):
    """Cells of one model's finished runs: recipe, epochs, seeds, test accuracy (mean ± standard deviation
    over seeds), the paper's figure, the difference, wall time per run, machines."""
    accuracies = [100 * result["test_accuracy"] for result in finished]
    mean, spread = mean_and_spread(accuracies)
    measured = f"{mean:.2f}" if spread is None else f"{mean:.2f} ± {spread:.2f}"
    reported = registry.record(name).reported(family)
    difference = f"{mean - reported[0][1]:+.2f}" if reported else ""
    wall = statistics.fmean(result.get("wall_seconds", math.nan) for result in finished)
    machines = sorted({m for result in finished for m in result.get("machines", [])})
    return [finished[0].get("recipe", ""), len(finished[0]["history"]["epoch"]), len(finished), measured,
            registry.record(name).cite(family), difference, runs.format_duration(wall), "; ".join(machines)]


SUMMARY_HEADER = ["recipe", "epochs", "seeds", "test accuracy (%)", "paper (%)", "difference", "wall time per run",
                  "machines"]
NOTE = ("Test accuracy: the final epoch's, on the full test split, mean ± standard deviation over seeds. "
        "Paper: as reported (original data, the authors' training).\n\n")


def results_table(folder, plan):
    """The campaign's finished models beside the paper's figures, as a markdown table."""
    rows = [[name, *summary(name, finished, plan["family"])] for name in ordered_models(plan["table"], plan["models"])
            if (finished := finished_results(folder, plan, name))]
    return NOTE + markdown.table(["model", *SUMMARY_HEADER], rows, align=["---"] + ["---:"] * 7 + ["---"]) + "\n"


def trained_on(finished, plan):
    """The data and precision of a model's finished runs: the archive they recorded (runs before 0.9
    recorded only the dataset's name), and each distinct precision."""
    files = sorted({result["data"]["file"] for result in finished if result.get("data")})
    data = ", ".join(files) if files else f"{plan['dataset']} (archive not recorded)"
    precisions = sorted({result.get("precision", "") for result in finished} - {""})
    return data, "; ".join(precisions)


def comparison_table(folders):
    """The finished models of the campaigns in ``folders`` side by side, model by model in the paper's
    order, each campaign's row saying which data and precision it trained with."""
    plans = {folder: read_plan(folder, "--compare") for folder in folders}
    tables = {plan["table"] for plan in plans.values()}
    if len(tables) != 1:
        raise ValueError(f"--compare takes campaigns of one paper table. Received: --compare with tables "
                         f"{', '.join(sorted(tables))}")
    names = [name for plan in plans.values() for name in plan["models"]]
    rows = []
    for name in ordered_models(tables.pop(), list(dict.fromkeys(names))):
        for folder, plan in plans.items():
            finished = finished_results(folder, plan, name) if name in plan["models"] else []
            if finished:
                rows.append([name, f"`{folder}`", *trained_on(finished, plan),
                             *summary(name, finished, plan["family"])])
    header = ["model", "campaign", "data", "precision", *SUMMARY_HEADER]
    return NOTE + markdown.table(header, rows, align=["---"] * 4 + ["---:"] * 7 + ["---"]) + "\n"


def read_plan(folder, flag="--status"):
    """The plan in ``folder``'s campaign.json; a ValueError naming ``flag`` where there is none."""
    path = os.path.join(folder, "campaign.json")
    if not os.path.isfile(path):
        raise ValueError(f"{folder} holds no campaign (no campaign.json; `rir-keras reproduce --output {folder}` "
                         f"starts one). Received: {flag}={folder!r}")
    return runs.read_json(path)


TARGET_ACCURACY = 0.90  # the time-to-accuracy mark (docs/benchmarks.md)


def time_to_accuracy(run, target=TARGET_ACCURACY):
    """``(epochs, seconds)`` the run took to first reach ``target`` test accuracy, or None if it has
    not. The seconds add up the epochs' logged wall times, so they include whatever slowed the machine."""
    log = runs.read_log(os.path.join(run, "log.csv"))
    elapsed = 0.0
    for epoch, (accuracy, seconds) in enumerate(zip(log.get("val_accuracy", []), log.get("seconds", [])), 1):
        elapsed += seconds
        if accuracy >= target:
            return epoch, elapsed
    return None


def status(folder):
    """Each planned run's epochs done and left, last test accuracy and ETA, as text."""
    plan = read_plan(folder)
    progress = [(name, seed, runs.progress(run)) for name, seed, run in runs_of(folder, plan)]
    measured = [p.seconds_per_epoch for _, _, p in progress if p.seconds_per_epoch]
    by_model = {name: [p.seconds_per_epoch for n, _, p in progress if n == name and p.seconds_per_epoch]
                for name in plan["models"]}
    rows, total = [], 0.0
    for (name, seed, p), (_, _, run) in zip(progress, runs_of(folder, plan)):
        planned = p.epochs_total or plan["epochs"]
        speed = p.seconds_per_epoch or (statistics.median(by_model[name]) if by_model[name] else
                                        statistics.median(measured) if measured else None)
        left = 0 if p.finished else planned - p.epochs_done
        eta = 0.0 if p.finished else (left * speed if speed else None)
        total = None if total is None or eta is None else total + eta
        accuracy = p.test_accuracy if p.finished else p.last_accuracy
        reached = time_to_accuracy(run)
        rows.append([name, seed, f"{p.epochs_done}/{planned}", left,
                     "" if accuracy is None else f"{100 * accuracy:.2f}" + (" (final)" if p.finished else ""),
                     ("not reached" if p.finished else "") if reached is None else
                     f"epoch {reached[0]}, {runs.format_duration(reached[1])}",
                     "" if speed is None else f"{speed:.0f}" + ("" if p.seconds_per_epoch else " (est.)"),
                     "finished" if p.finished else runs.format_duration(eta)])
    header = ["model", "seed", "epochs", "left", "test accuracy (%)",
              f"{100 * TARGET_ACCURACY:.0f}% reached (logged time)", "s/epoch", "ETA"]
    left = sum(row[3] for row in rows)
    return (f"{folder}: table {plan['table']}, recipe {plan['recipe']}, dataset {plan['dataset']}\n\n"
            + markdown.table(header, rows, align=["---"] + ["---:"] * 7)
            + f"\n\n{left} epochs left; ETA {runs.format_duration(total)} at the measured speeds "
              "(s/epoch marked est. borrows another run's).\n")
