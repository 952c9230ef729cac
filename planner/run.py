"""`planner run OUT/ --target host`: build the C project `planner solve` emitted (OUT/c/), run it
on given or seeded random inputs, and compare every output bit for bit with the golden model of
the deployed network (the plan's network file with the plan's FWSA decisions, planner.deployed).

With --check-layers every layer's output is compared too, so a mismatch names its layer; without
it, a mismatch triggers one rebuild with the per-layer dump to find the first bad layer.
--fault drop-wait:LAYER builds the project without the first DMA wait of LAYER (the emulated
DMA then leaves poison in that buffer): the run must not be bit-exact.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from planner.errors import PlannerError, UsageError
from planner.plan import Plan


@dataclass(frozen=True)
class RunTarget:
    """How `planner run` builds and runs the project for one target."""

    name: str
    platform: str                 # platform/<name>/ of the project ("host": the top Makefile)
    make_dir: str                 # directory of the Makefile, relative to the project
    make_vars: tuple[tuple[str, str], ...]
    exe: str                      # executable in the build directory
    qemu: tuple[str, ...] | None  # emulator command, or None (run on the host)
    qemu_target: str | None       # the hardware model's qemu_target it needs (None: any plan)
    tools: tuple[tuple[str, str], ...]   # (command, Debian package)


TARGETS = {
    "host": RunTarget("host", "host", ".", (), "network", None, None,
                      (("gcc", "gcc"), ("make", "make"))),
    "qemu-m7": RunTarget("qemu-m7", "stm32", "platform/stm32", (("VARIANT", "qemu"),), "network.elf",
                         ("qemu-system-arm", "-M", "mps2-an500"), "m7",
                         (("arm-none-eabi-gcc", "gcc-arm-none-eabi"), ("qemu-system-arm", "qemu-system-arm"),
                          ("make", "make"))),
    "qemu-m4": RunTarget("qemu-m4", "stm32", "platform/stm32", (("VARIANT", "qemu"),), "network.elf",
                         ("qemu-system-arm", "-M", "mps2-an386"), "m4",
                         (("arm-none-eabi-gcc", "gcc-arm-none-eabi"), ("qemu-system-arm", "qemu-system-arm"),
                          ("make", "make"))),
    "qemu-rv32": RunTarget("qemu-rv32", "gap9", "platform/gap9", (), "network.elf",
                           ("qemu-system-riscv32", "-M", "virt", "-bios", "none"), "rv32",
                           (("riscv64-unknown-elf-gcc", "gcc-riscv64-unknown-elf"),
                            ("qemu-system-riscv32", "qemu-system-misc"), ("make", "make"))),
}
FAULT_EXIT_CODE = 70  # the targets' fault handlers exit with it
SANITIZERS = ("address", "thread")


@dataclass
class RunOptions:
    target: str = "host"
    inputs: str | Path | None = None
    sanitize: str | None = None
    check_layers: bool = False
    fault: str | None = None           # "drop-wait:LAYER"
    timeout: float = 120.0
    seed: int = 0


@dataclass
class LayerCheck:
    index: int
    name: str
    mismatches: int
    total: int
    max_abs: int


@dataclass
class RunResult:
    exact: bool
    mismatches: int
    total: int
    max_abs: int
    outputs: list[np.ndarray]
    host_ns: int | None = None
    build_s: float = 0.0
    first_bad_layer: LayerCheck | None = None
    layers: list[LayerCheck] = field(default_factory=list)
    fault_layer: str | None = None
    measured: dict | None = None       # instruction counts on a QEMU target (measured.json)
    plan_code_estimate: int | None = None  # plan.json footprint.read_only.code_estimate


def _tool_check(t: RunTarget) -> None:
    missing = [(cmd, pkg) for cmd, pkg in t.tools if shutil.which(cmd) is None]
    if missing:
        pkgs = " ".join(sorted({pkg for _, pkg in missing}))
        raise PlannerError(f"the {t.name} target needs {', '.join(cmd for cmd, _ in missing)}: install "
                           f"the Debian package{'s' if len(missing) > 1 else ''} (apt-get install {pkgs})")


def _check_target(t: RunTarget, plan: Plan) -> None:
    """A plan runs on the host, and on the emulator of its own hardware model."""
    if t.qemu_target is None:
        return
    from planner.hw import load_hw_model
    hw_name = plan.hardware["name"]
    try:
        qt = load_hw_model(hw_name).qemu_target
    except PlannerError:
        qt = None
    if qt != t.qemu_target:
        own = [n for n, x in TARGETS.items() if x.qemu_target is not None and x.qemu_target == qt]
        raise UsageError(f"--target {t.name}: the plan is for {plan.hardware.get('display_name', hw_name)}; "
                         f"it runs on --target host{' or ' + own[0] if own else ''} (re-plan with "
                         "planner solve for the other hardware model)")


def _read_plan(out: Path) -> Plan:
    if not out.is_dir():
        raise UsageError(f"{out}: no such directory (the output directory of planner solve)")
    p = out / "plan.json"
    if not p.is_file():
        raise UsageError(f"{out}: no plan.json here: run `planner solve NET.onnx HW.json -o {out}` first")
    try:
        return Plan.read(p)
    except (ValueError, KeyError, TypeError) as exc:
        raise PlannerError(f"{p}: not a plan written by planner solve ({exc})") from None


def _first_compile_error(text: str) -> str:
    for line in text.splitlines():
        m = re.match(r"^(.+?):(\d+):(?:\d+:)? (?:fatal )?error: (.*)$", line)
        if m:
            return f"{m.group(1)}:{m.group(2)}: {m.group(3)}"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no compiler output"


def _layer_index(plan: Plan, spec: str) -> int:
    for k, lp in enumerate(plan.layers):
        if lp.name == spec:
            return k
    if spec.isdigit() and int(spec) < len(plan.layers):
        return int(spec)
    names = ", ".join(lp.name for lp in plan.layers)
    raise UsageError(f"--fault drop-wait:{spec}: no such layer in the plan (layers: {names})")


def _check_inputs(graph, arrays: list[np.ndarray], source: str) -> None:
    from planner.ir import DTYPE_RANGES
    for name, arr in zip(graph.inputs, arrays):
        t = graph.tensors[name]
        lo, hi = DTYPE_RANGES[t.dtype]
        if arr.size and (arr.min() < lo or arr.max() > hi):
            raise PlannerError(f"{source}: values of input '{name}' span [{int(arr.min())}, "
                               f"{int(arr.max())}], outside its {t.dtype} range [{lo}, {hi}]")


def build_and_run(out: Path, plan: Plan, io, arrays: list[np.ndarray], opts: RunOptions, *,
                  check_layers: bool, fault_index: int | None) -> tuple[str, float, int | None]:
    """Build the project for the target with these inputs and run it; returns (stdout, build
    seconds, host ns of net_run on the host target)."""
    import os

    from codegen.project import PROJECT_DIR, render_inputs

    t = TARGETS[opts.target]
    root = (out / PROJECT_DIR).resolve()
    tag = t.name + (f"-{opts.sanitize}" if opts.sanitize else "") + ("-layers" if check_layers else "") \
        + (f"-fault{fault_index}" if fault_index is not None else "")
    build = root / "build" / tag
    build.mkdir(parents=True, exist_ok=True)
    inputs_c = build / "run_inputs.c"
    inputs_c.write_text(render_inputs(io.inputs, arrays), encoding="utf-8")
    defs = []
    if check_layers:
        defs.append("-DNR_CHECK_LAYERS")
    if fault_index is not None:
        defs.append(f"-DNR_FAULT_DROP_WAIT={fault_index}")
    make_dir = root / t.make_dir
    if not (make_dir / "Makefile").is_file():
        raise PlannerError(f"{out}: the C project has no {t.platform} platform ({make_dir}/Makefile is "
                           "missing): re-run planner solve")
    makefile = ["-f", "Makefile.standin"] if t.name == "qemu-rv32" else []
    cmd = ["make", "-s", f"-j{os.cpu_count() or 1}", "-C", str(make_dir), *makefile, f"BUILD={build}",
           f"INPUTS={inputs_c}", f"DEFS={' '.join(defs)}", *(f"{k}={v}" for k, v in t.make_vars)]
    if t.name == "host":
        cmd.append(f"SAN={opts.sanitize or ''}")
    if shutil.which("ccache") and not os.environ.get("PLANNER_NO_CCACHE"):
        cmd.append("CCACHE=ccache")  # the kernel library compiles once per target and flags
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    build_s = time.monotonic() - t0
    if proc.returncode != 0:
        raise PlannerError(f"building {root} for {t.name} failed: "
                           f"{_first_compile_error(proc.stdout + proc.stderr)}")
    exe = build / t.exe
    stdout, stderr, code = _execute(exe, t, opts.timeout, build)
    if code != 0:
        running = _running_layer(stdout, plan)
        where = f" while layer {running} ran" if running else (
            " (run with --check-layers to see which layer ran)" if not check_layers else "")
        if code < 0:
            what = f"was killed by signal {signal.Signals(-code).name}"
        elif t.qemu is not None and code == FAULT_EXIT_CODE:
            what = f"faulted on {t.name} (a hard fault or a memory fault: exit code {FAULT_EXIT_CODE})"
        else:
            what = f"exited with code {code}"
        err = stderr.strip().splitlines()
        detail = ("; " + " | ".join(err[:6])) if err else ""
        raise PlannerError(f"{exe} {what}{where}{detail}")
    m = re.search(r"^T host_ns (\d+)$", stdout, re.M)
    return stdout, build_s, int(m.group(1)) if m else None


def _execute(exe: Path, t: RunTarget, timeout: float, build: Path) -> tuple[str, str, int]:
    """Run on the host or under QEMU (semihosting output through a file); (stdout, stderr, code)."""
    if t.qemu is None:
        cmd = [str(exe)]
        outfile = None
    else:
        outfile = build / "semihosting.txt"
        outfile.unlink(missing_ok=True)
        cmd = [*t.qemu, "-nographic", "-chardev", f"file,id=nrout,path={outfile}",
               "-semihosting-config", "enable=on,target=native,chardev=nrout", "-kernel", str(exe)]
        plugin = _icount_args(exe, t, build)
        if plugin:
            cmd += ["-plugin", plugin]
    try:
        run = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PlannerError(f"{exe} did not finish within {timeout:g} s{' on ' + t.name if t.qemu else ''}: "
                           "killed (a hang: a DMA wait or barrier that never completes?)") from None
    stdout = run.stdout.decode(errors="replace")
    if outfile is not None:
        stdout = outfile.read_text(errors="replace") if outfile.is_file() else ""
    return stdout, run.stderr.decode(errors="replace"), run.returncode


def is_kernel_function(name: str) -> bool:
    """The functions whose instructions measured.json counts as the kernel library's."""
    return name.startswith("kl_")


def _icount_args(exe: Path, t: RunTarget, build: Path, counted=is_kernel_function,
                 tag: str = "") -> str | None:
    """The instruction-count plugin's -plugin argument: one region per layer (nr_prof_begin ..
    nr_prof_end), the functions `counted` selects (by name; default: the kernel library's) as
    the ranges counted apart; None when the plugin cannot be built here (the run goes on
    without counts)."""
    from planner import toolchain as tc

    if tc.icount_unavailable_reason(t.name):
        return None
    lib = tc.icount_plugin(t.name)
    nm = tc.get_target(t.name).nm
    text = subprocess.run([nm, "-S", "--defined-only", str(exe)], capture_output=True, text=True).stdout
    marks: dict[str, int] = {}
    ranges = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT":
            addr, size, name = int(parts[0], 16) & ~1, int(parts[1], 16), parts[3]
            if counted(name):
                ranges.append(f"{addr:x} {size:x}")
        if len(parts) >= 3 and parts[-1] in ("nr_prof_begin", "nr_prof_end"):
            marks[parts[-1]] = int(parts[0], 16) & ~1
    if len(marks) != 2:
        return None
    rfile = build / f"kernel_ranges{tag}.txt"
    rfile.write_text("\n".join(ranges) + "\n")
    report = build / f"icount{tag}.txt"
    report.unlink(missing_ok=True)
    opt = lambda v: str(v).replace(",", ",,")  # noqa: E731 - QEMU option lists double commas
    return (f"{opt(lib)},out={opt(report)},start={marks['nr_prof_begin']:#x},"
            f"stop={marks['nr_prof_end']:#x},ranges={opt(rfile)}")


def count_functions(out_dir: str | Path, target: str, counted, tag: str,
                    timeout: float = 300.0) -> dict:
    """Run the project `planner run --target` built for `target` again, counting per layer the
    instructions inside the functions `counted` selects (by name): read_icount's dict."""
    from codegen.project import PROJECT_DIR

    t = TARGETS[target]
    build = (Path(out_dir) / PROJECT_DIR).resolve() / "build" / t.name
    exe = build / t.exe
    if not exe.is_file():
        raise PlannerError(f"{out_dir}: not built for {target} (run planner run --target {target} first)")
    plugin = _icount_args(exe, t, build, counted, tag)
    if plugin is None:
        raise PlannerError(f"cannot count instructions on {target} here")
    outfile = build / "semihosting.txt"
    cmd = [*t.qemu, "-nographic", "-chardev", f"file,id=nrout,path={outfile}",
           "-semihosting-config", "enable=on,target=native,chardev=nrout", "-kernel", str(exe),
           "-plugin", plugin]
    try:
        run = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PlannerError(f"{exe} did not finish within {timeout:g} s on {target}") from None
    if run.returncode != 0:
        raise PlannerError(f"{exe} exited with code {run.returncode} on {target}")
    counts = read_icount(build, tag)
    if counts is None:
        raise PlannerError(f"{exe}: no instruction-count report")
    return counts


def read_icount(build: Path, tag: str = "") -> dict | None:
    """Per-layer and total counts of the last run in `build` (None without a report)."""
    report = build / f"icount{tag}.txt"
    if not report.is_file():
        return None
    layers, total, total_in, errors = [], None, None, []
    for line in report.read_text().splitlines():
        parts = line.split()
        if line.startswith("icount: region"):
            layers.append((int(parts[4]), int(parts[6]) if len(parts) > 6 else None))
        elif line.startswith("icount: total insns"):
            total = int(parts[-1])
        elif line.startswith("icount: total in_ranges"):
            total_in = int(parts[-1])
        elif line.startswith("icount: error"):
            errors.append(line)
    if errors:
        raise PlannerError(f"instruction counting failed: {'; '.join(errors)}")
    return {"layers": layers, "program_total": total, "program_in_kernels": total_in}


def _running_layer(stdout: str, plan: Plan) -> str | None:
    begun = re.findall(r"^B (\d+)$", stdout, re.M)
    done = set(re.findall(r"^L (\d+) ", stdout, re.M))
    for k in reversed(begun):
        if k not in done:
            return plan.layers[int(k)].name
    return None


def run(out_dir: str | Path, opts: RunOptions | None = None) -> RunResult:
    from codegen.project import PROJECT_DIR, io_map, test_inputs
    from planner.deployed import deployed_graph, planning_graph
    from planner.golden.run import run_graph

    opts = opts or RunOptions()
    if opts.target not in TARGETS:
        raise UsageError(f"--target {opts.target!r}: known targets: {', '.join(TARGETS)}")
    if opts.sanitize is not None and opts.sanitize not in SANITIZERS:
        raise UsageError(f"--sanitize must be one of {', '.join(SANITIZERS)}, got {opts.sanitize!r}")
    if opts.sanitize is not None and opts.target != "host":
        raise UsageError(f"--sanitize runs on the host target only (not {opts.target})")
    if opts.fault is not None and opts.target != "host":
        raise UsageError(f"--fault needs the host's emulated DMA (on {opts.target} transfers complete at once)")
    if opts.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {opts.timeout}")
    out = Path(out_dir)
    plan = _read_plan(out)
    target = TARGETS[opts.target]
    _check_target(target, plan)
    if not (out / PROJECT_DIR / "Makefile").is_file():
        raise PlannerError(f"{out}: no emitted C project ({out / PROJECT_DIR}/ is missing): run planner "
                           "solve without --no-emit")
    fault_index = None
    if opts.fault is not None:
        kind, _, layer = opts.fault.partition(":")
        if kind != "drop-wait" or not layer:
            raise UsageError(f"--fault {opts.fault!r}: expected drop-wait:LAYER")
        fault_index = _layer_index(plan, layer)
        if not any(b.access == "dma" and b.kind in ("in", "weight", "inout")
                   for b in plan.layers[fault_index].buffers):
            raise UsageError(f"--fault drop-wait:{layer}: layer {plan.layers[fault_index].name} has no "
                             "DMA transfer to wait for (its data is read where it lives)")
    _tool_check(target)
    graph = deployed_graph(plan)
    if opts.inputs is not None:
        from planner.golden.io import load_npz_inputs
        arrays = load_npz_inputs(graph, opts.inputs)
        _check_inputs(graph, arrays, str(opts.inputs))
    else:
        arrays = test_inputs(graph, opts.seed)
    io = io_map(plan, graph)
    pg = planning_graph(plan, graph)
    env = run_graph(pg, arrays, keep_all=True)
    stdout, build_s, host_ns = build_and_run(out, plan, io, arrays, opts, check_layers=opts.check_layers,
                                             fault_index=fault_index)
    measured = None
    if target.qemu is not None:
        tag = target.name + ("-layers" if opts.check_layers else "")
        build = (out / PROJECT_DIR).resolve() / "build" / tag
        counts = read_icount(build)
        if counts is not None:
            measured = measured_doc(plan, target, counts, opts.check_layers)
            sizes = elf_sizes(build / target.exe, target.name)
            if sizes is not None:
                measured["sizes"] = sizes
    outs = _parse(stdout, "O", len(graph.outputs), out)
    got = [io.decode(o, outs[k]).reshape(graph.tensors[o.name].shape) for k, o in enumerate(io.outputs)]
    exp = [env[o] for o in graph.outputs]
    mism = total = maxd = 0
    for g, e in zip(got, exp):
        d = np.abs(g - e)
        mism += int(np.count_nonzero(d))
        total += int(d.size)
        maxd = max(maxd, int(d.max()) if d.size else 0)
    res = RunResult(mism == 0, mism, total, maxd, got, host_ns, build_s,
                    fault_layer=plan.layers[fault_index].name if fault_index is not None else None,
                    measured=measured,
                    plan_code_estimate=((plan.footprint or {}).get("read_only") or {}).get("code_estimate"))
    if measured is not None:
        from planner.plan import dumps
        (out / "measured.json").write_text(dumps(measured), encoding="utf-8")
    if opts.check_layers:
        res.layers = _layer_checks(stdout, plan, io, env, out)
    elif mism:
        stdout2, _, _ = build_and_run(out, plan, io, arrays, opts, check_layers=True, fault_index=fault_index)
        res.layers = _layer_checks(stdout2, plan, io, env, out)
    res.first_bad_layer = next((lc for lc in res.layers if lc.mismatches), None)
    return res


def _parse(stdout: str, tag: str, n: int, out: Path) -> dict[int, bytes]:
    found = {}
    for m in re.finditer(rf"^{tag} (\d+) ([0-9a-f]*)$", stdout, re.M):
        found[int(m.group(1))] = bytes.fromhex(m.group(2))
    if tag == "O" and len(found) != n:
        raise PlannerError(f"the program of {out} printed {len(found)} of its {n} outputs (truncated output?)")
    return found


def _layer_checks(stdout: str, plan: Plan, io, env, out: Path) -> list[LayerCheck]:
    dumps = _parse(stdout, "L", len(plan.layers), out)
    checks = []
    for k, lp in enumerate(plan.layers):
        if k not in dumps:
            continue
        t = io.layer_outputs[k]
        got = io.decode(t, dumps[k])
        exp = np.asarray(env[t.name]).reshape(got.shape)
        d = np.abs(got - exp)
        checks.append(LayerCheck(k, lp.name, int(np.count_nonzero(d)), int(d.size),
                                 int(d.max()) if d.size else 0))
    return checks


# sections of the built program (codegen/platforms/*/ld, the RV32 stand-in's script): code and
# constants (in flash / the program image), initialised data (its initial values in flash too)
_ROM_SECTIONS = (".text", ".rodata", ".ARM.exidx", ".srodata")
_DATA_SECTIONS = (".data", ".sdata")
_IMAGES = ("net_l2_image", "net_l3_image")


def elf_sizes(exe: Path, target: str) -> dict | None:
    """measured.json `sizes`: the built ELF's read-only and read-write bytes (the target's
    binutils `size -A` and `nm -S`), the weights images, runtime tables and test inputs apart, so
    that `code` is the program's own code and constants (what plan.json
    footprint.read_only.code_estimate estimates). None when the tools are missing."""
    from planner import toolchain as tc

    nm = tc.get_target(target).nm
    size = nm[:-2] + "size" if nm and nm.endswith("nm") else None
    if size is None or shutil.which(size) is None or shutil.which(nm) is None or not exe.is_file():
        return None
    sections: dict[str, int] = {}
    for line in subprocess.run([size, "-A", str(exe)], capture_output=True, text=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit() \
                and not parts[0].startswith((".debug", ".comment", ".riscv.attributes")):
            sections[parts[0]] = int(parts[1])
    symbols: dict[str, int] = {}
    for line in subprocess.run([nm, "-S", "--defined-only", str(exe)], capture_output=True,
                               text=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 4:
            symbols[parts[3]] = symbols.get(parts[3], 0) + int(parts[1], 16)
    rom = sum(sections.get(k, 0) for k in _ROM_SECTIONS)
    data = sum(sections.get(k, 0) for k in _DATA_SECTIONS)
    images = {k: symbols.get(k, 0) for k in _IMAGES}
    runtime = symbols.get("net_runtime", 0)
    inputs = sum(v for k, v in symbols.items() if k.startswith("net_test_input"))
    arenas = {k: symbols[k] for k in ("net_l1", "net_l2", "net_l3") if k in symbols}
    bss = sum(v for k, v in sections.items() if k in (".bss", ".sbss"))
    if not any(k.startswith(".nr_") for k in sections):  # the arenas are in .bss (RV32 stand-in)
        bss -= sum(arenas.values())
    return {"tool": f"{Path(size).name} -A, {Path(nm).name} -S", "sections": sections,
            "read_only": {"total": rom + data, "weights_images": images, "runtime_tables": runtime,
                          "test_inputs": inputs,
                          "code": rom + data - sum(images.values()) - runtime - inputs},
            "read_write": {"arenas": arenas, "data_bss": data + bss},
            "note": ("code = read-only sections (code, constants, .data initial values) minus the "
                     "weights images, the runtime tables and the built-in test inputs; arenas: the "
                     "network's RAM (net_l1, net_l2, and net_l3 where L3 is a RAM the program "
                     "fills); data_bss: the runtime's and platform's own variables")}


def measured_doc(plan: Plan, t: RunTarget, counts: dict, check_layers: bool) -> dict:
    """measured.json: the instructions of each layer and of the network on the QEMU target, beside
    the cost model's estimate of that QEMU run (planner/qemu_estimate.py: the kernels' and the
    generated code's cost terms in instructions, plus the QEMU DMA port's copies) and the plan's
    estimate for the chip in cycles."""
    from planner import qemu_estimate as qe

    hw, cores = qe.plan_hardware(plan)
    i2c = float(hw.insn_to_cycle)
    sequential = t.name == "qemu-rv32" and cores > 1
    if len(counts["layers"]) != len(plan.layers):
        raise PlannerError(f"instruction counting: {len(counts['layers'])} layer regions for "
                           f"{len(plan.layers)} layers")
    ests = qe.estimate(plan, t.name, hw)
    stale = [lp.name for lp, (_, _, ev) in zip(plan.layers, qe.layer_evaluations(plan, hw))
             if ev.cycles != lp.est_cycles]
    layers = []
    for k, (lp, (n, n_in), e) in enumerate(zip(plan.layers, counts["layers"], ests)):
        est = e.total
        layers.append({"step": k, "name": lp.name, "op": lp.op, "instructions": n,
                       "kernel_instructions": n_in, "outside_kernels": None if n_in is None else n - n_in,
                       "estimate_instructions": int(round(est)),
                       "estimate_parts": {"kernels": int(round(e.kernels)), "overhead": int(round(e.overhead)),
                                          "dma_port": int(round(e.port))},
                       "estimate_over_measured": round(est / n, 4) if n else None,
                       "chip_estimate_cycles": lp.est_cycles})
    total = sum(x["instructions"] for x in layers)
    total_in = sum(x["kernel_instructions"] or 0 for x in layers)
    doc = {
        "target": t.name, "hardware": plan.hardware["name"], "network": plan.network,
        "unit": "guest instructions counted by QEMU (TCG plugin), not cycles",
        "insn_to_cycle": i2c,
        "network_total": {"instructions": total, "kernel_instructions": total_in,
                          "outside_kernels_share": round((total - total_in) / total, 4) if total else None,
                          "estimate_instructions": sum(x["estimate_instructions"] for x in layers),
                          "chip_estimate_cycles": sum(x["chip_estimate_cycles"] for x in layers)},
        "layers": layers,
        "notes": ["a layer's count runs from nr_prof_begin(k) to nr_prof_end(k) around layer k; the "
                  "network total is their sum (the glue between layers is left out)",
                  "kernel_instructions: instructions inside the kernel library's functions (kl_*); "
                  "the rest is the tile engine, the DMA port (copies on QEMU) and the dispatch",
                  "estimate_instructions: the cost model's estimate of this QEMU run "
                  "(planner/qemu_estimate.py): the kernels' and the generated code's cost terms "
                  "(estimated cycles / insn_to_cycle) plus the copies of the QEMU build's DMA port "
                  "(qemu_dma_port); the chip's DMA time and its flash wait states are not in it (QEMU "
                  "has no DMA engine and no wait states), they are in chip_estimate_cycles, the "
                  "plan's estimate for the chip"],
    }
    if sequential:
        doc["notes"].append(f"the GAP9 stand-in runs the plan's {cores} cores one after another: "
                            "counts are the sum over the cores; the estimate counts the kernels "
                            "(busiest core x cores: a balanced split) and the per-layer, per-tile and "
                            "per-call work once per core, the transfers and copies once")
    if stale:
        doc["notes"].append(f"the hardware model changed since the plan was made ({len(stale)} layers "
                            "estimate differently now): the estimate is the current model's, "
                            "chip_estimate_cycles the plan's")
    if check_layers:
        doc["notes"].append("counted in the --check-layers build: the per-layer dumps run outside the regions")
    return doc
