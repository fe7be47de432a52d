"""A benchmark worker: one framework in its own process, driven by ``timing.Worker`` over JSON lines.

    python benchmarks/worker.py tensorflow|jax|torch

Requests on stdin, one JSON object a line; one reply a line on stdout (everything the libraries
print goes to stderr):

    {"op": "setup", "name": N, "factory": F, "kwargs": {...}}  -> the factory's info dict
    {"op": "run", "name": N, "steps": K}                       -> {"seconds": wall time of K steps,
                                                                   "cpu_seconds": this process's CPU time}
    {"op": "turns", "names": [N, ...], "steps": K}             -> {"seconds": [total per name]}

"turns" runs K rounds of one step of each name, the order rotated every round, so that a burst of
load from elsewhere falls on all of them alike.

Errors come back as ``{"error": traceback}``.
"""
import json
import os
import sys
import time
import traceback

FRAMEWORKS = ("tensorflow", "jax", "torch")


def turns(functions, rounds):
    """Total seconds of each function over ``rounds`` rounds of one call each, in rotated order."""
    totals = [0.0] * len(functions)
    for round_ in range(rounds):
        for offset in range(len(functions)):
            index = (round_ + offset) % len(functions)
            start = time.perf_counter()
            functions[index]()
            totals[index] += time.perf_counter() - start
    return totals


def serve(requests, replies):
    import jobs

    steps = {}
    for line in requests:
        request = json.loads(line)
        try:
            if request["op"] == "setup":
                steps[request["name"]], reply = jobs.FACTORIES[request["factory"]](**request["kwargs"])
            elif request["op"] == "run":
                step = steps[request["name"]]
                start, cpu = time.perf_counter(), time.process_time()
                for _ in range(request["steps"]):
                    step()
                reply = {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}
            elif request["op"] == "turns":
                reply = {"seconds": turns([steps[name] for name in request["names"]], request["steps"])}
            else:
                raise ValueError(f"unknown op. Received: op={request['op']!r}")
        except Exception:  # reported to the parent, which raises it there
            reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main():
    framework = sys.argv[1]
    if framework not in FRAMEWORKS:
        raise SystemExit(f"framework must be one of {FRAMEWORKS}. Received: framework={framework!r}")
    if framework != "torch":
        os.environ["KERAS_BACKEND"] = framework
        import rir_keras  # noqa: F401 (first, as a user should: it picks TensorFlow's CPU kernels before they load)
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library chatter on fd 1 goes to stderr, away from the replies
    sys.stdout = sys.stderr
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
