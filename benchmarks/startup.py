"""Section 4: start-up. `python -m parity --help` and `import refnets` must import
no framework; their wall time (median of fresh processes) and the modules they load."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import List

from ._common import ROOT, child_env, median

FRAMEWORKS = ("torch", "torchvision", "mxnet", "keras", "tensorflow", "tf_keras", "jax", "jaxlib", "tensorboard")
COMMANDS = {
    "python -c pass": ["-c", "pass"],  # the interpreter alone, for reference
    "python -c 'import numpy'": ["-c", "import numpy"],  # refnets' one third-party import, for reference
    "python -c 'import refnets'": ["-c", "import refnets"],
    "python -m parity --help": ["-m", "parity", "--help"],
}
PROBES = {
    "python -c 'import refnets'": "import refnets",
    "python -m parity --help": "parity --help",
}


# Run as `python -c PROBE TARGET`: nothing but the target is imported before the listing
# (json and sys only), so the module count is the command's own.
PROBE = """
import sys
target = sys.argv[1]
if target == "import refnets":
    import refnets
else:
    import contextlib, io, runpy
    sys.argv = ["parity", "--help"]
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_module("parity", run_name="__main__", alter_sys=True)
        except SystemExit:
            pass
count = len(sys.modules)
import json
print(json.dumps({"modules": count, "names": sorted(sys.modules)}))
"""


def probe(target: str) -> dict:
    """What `target` leaves loaded, in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", PROBE, target], cwd=ROOT, env=child_env(), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    tops = sorted({name.split(".")[0] for name in loaded["names"]} - set(sys.stdlib_module_names))
    return {"modules": loaded["modules"], "frameworks": [t for t in tops if t in FRAMEWORKS],
            "third_party": [t for t in tops if not t.startswith("_") and t not in ("__main__", "cython_runtime")]}


def _wall(args: List[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable] + args, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def run(quick: bool, log) -> dict:
    repeats = 3 if quick else 10
    samples = {name: [] for name in COMMANDS}
    for name in COMMANDS:  # one untimed run each: the page cache
        _wall(COMMANDS[name])
    for _ in range(repeats):
        for name, args in COMMANDS.items():
            samples[name].append(_wall(args))
    rows = []
    for name in COMMANDS:
        row = {"command": name, "median_s": median(samples[name]), "min_s": min(samples[name]),
               "samples_s": samples[name]}
        if name in PROBES:
            found = probe(PROBES[name])
            row.update({k: found.get(k) for k in ("modules", "frameworks", "third_party", "error")})
        rows.append(row)
        log(f"startup: {name:32s} {row['median_s'] * 1e3:7.1f} ms  frameworks loaded: "
            f"{row.get('frameworks', '-')}")
    return {"repeats": repeats, "rows": rows}


def verdicts(section: dict) -> List[dict]:
    return [{"what": f"`{r['command']}` loads no framework", "value": ", ".join(r["frameworks"]) or "none",
             "target": "none", "met": not r["frameworks"],
             "also": f"{r['median_s'] * 1e3:.0f} ms wall"}
            for r in section["rows"] if r.get("frameworks") is not None]


def markdown(section: dict) -> List[str]:
    lines = ["### 4. Start-up",
             "",
             f"Wall time of a fresh process (median of {section['repeats']}, start-up of the interpreter "
             "included), and what it loads besides the standard library.",
             "",
             "| command | median ms | min ms | modules loaded | frameworks loaded | third-party packages |",
             "|---|---|---|---|---|---|"]
    for r in section["rows"]:
        frameworks = r.get("frameworks")
        lines.append(f"| `{r['command']}` | {r['median_s'] * 1e3:.0f} | {r['min_s'] * 1e3:.0f} | "
                     f"{r.get('modules', '-')} | {'-' if frameworks is None else ', '.join(frameworks) or 'none'} | "
                     f"{', '.join(r.get('third_party') or []) or '-'} |")
    return lines + [""]
