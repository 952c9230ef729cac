"""Build and run a C program on the host or on an emulated MCU (QEMU), optionally counting
guest instructions.

Targets
-------
``host``       gcc -O2 -Wall -Wextra -Werror (``sanitize=True`` adds -fsanitize=address,undefined)
``qemu-m7``    arm-none-eabi-gcc -mcpu=cortex-m7 (DSP), qemu-system-arm -M mps2-an500
``qemu-m4``    arm-none-eabi-gcc -mcpu=cortex-m4 (DSP), qemu-system-arm -M mps2-an386
``qemu-rv32``  riscv64-unknown-elf-gcc -march=rv32imc, qemu-system-riscv32 -M virt -bios none

The bare-metal targets use the project's own startup code, linker scripts and semihosting glue
(``kernel_lib/targets/``), no libc. A program defines ``int main(void)`` and writes through
``kernel_lib/targets/platform.h``; its return value is the exit code; a fault exits with 70.

API::

    available(target) -> bool                 (missing_tools(target) says what is missing)
    build(sources, include_dirs, target, out_dir, defines=None, ...) -> Path (the executable)
    run(exe, target, timeout=60, icount=False) -> RunResult(exit_code, stdout, stderr, ...)
    icount_unavailable_reason() -> str | None

Instruction counting (``run(..., icount=True)``) loads the project's own QEMU TCG plugin
(``planner/qemu/icount_plugin.c``, GPL-2.0-or-later: it uses QEMU's plugin API), built on first
use with the host gcc into a cache directory keyed by the hash of its source and build command
(``$PLANNER_CACHE_DIR``, else ``$XDG_CACHE_HOME/planner``, else ``~/.cache/planner``; a temporary
directory when none is writable). It counts the guest instructions of the whole run and of each
region between two marker functions (``prof_start``/``prof_stop`` by default; the generated
network uses ``nr_prof_begin``/``nr_prof_end``). Counts are instructions, never cycles.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
KERNEL_LIB = REPO_ROOT / "kernel_lib"
TARGETS_DIR = KERNEL_LIB / "targets"
ICOUNT_PLUGIN_SRC = Path(__file__).resolve().parent / "qemu" / "icount_plugin.c"
DEFAULT_MARKERS = ("prof_start", "prof_stop")

TARGET_NAMES = ("host", "qemu-m7", "qemu-m4", "qemu-rv32")

FAULT_EXIT_CODE = 70
TIMEOUT_EXIT_CODE = 124

_WARN = ["-Wall", "-Wextra", "-Werror"]
_BARE_COMMON = ["-O2", "-std=c99", "-ffreestanding", "-ffunction-sections", "-fdata-sections",
                *_WARN]


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    cc: str
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    runtime_sources: tuple[Path, ...]
    runtime_includes: tuple[Path, ...]
    qemu: tuple[str, ...] | None  # emulator command (without the program) or None for host
    nm: str | None
    isa: str  # "generic", "arm-dsp" (what descriptions.py calls the kernel path)

    @property
    def tools(self) -> tuple[str, ...]:
        t = [self.cc]
        if self.qemu:
            t.append(self.qemu[0])
        return tuple(t)


def _arm(name: str, cpu: str, fpu: str, machine: str) -> Target:
    arch = [f"-mcpu={cpu}", "-mthumb", "-mfloat-abi=hard", f"-mfpu={fpu}"]
    return Target(
        name=name,
        cc="arm-none-eabi-gcc",
        cflags=tuple(arch + _BARE_COMMON),
        ldflags=tuple(arch + ["-nostdlib", "-nostartfiles", "-Wl,--gc-sections",
                              f"-T{TARGETS_DIR / 'arm' / 'mps2.ld'}"]),
        runtime_sources=(TARGETS_DIR / "arm" / "startup_arm.c",
                         TARGETS_DIR / "common" / "semihost_io.c",
                         TARGETS_DIR / "common" / "kl_rt.c"),
        runtime_includes=(TARGETS_DIR,),
        qemu=("qemu-system-arm", "-M", machine),
        nm="arm-none-eabi-nm",
        isa="arm-dsp",
    )


_TARGETS: dict[str, Target] = {
    "host": Target(
        name="host",
        cc="gcc",
        cflags=("-O2", "-std=c99", *_WARN),
        ldflags=(),
        runtime_sources=(TARGETS_DIR / "host" / "plat_host.c",),
        runtime_includes=(TARGETS_DIR,),
        qemu=None,
        nm=None,
        isa="generic",
    ),
    "qemu-m7": _arm("qemu-m7", "cortex-m7", "fpv5-d16", "mps2-an500"),
    "qemu-m4": _arm("qemu-m4", "cortex-m4", "fpv4-sp-d16", "mps2-an386"),
    "qemu-rv32": Target(
        name="qemu-rv32",
        cc="riscv64-unknown-elf-gcc",
        cflags=("-march=rv32imc", "-mabi=ilp32", "-mcmodel=medany", "-misa-spec=2.2",
                *_BARE_COMMON),
        ldflags=("-march=rv32imc", "-mabi=ilp32", "-mcmodel=medany", "-nostdlib",
                 "-nostartfiles", "-Wl,--gc-sections", f"-T{TARGETS_DIR / 'rv32' / 'virt.ld'}"),
        runtime_sources=(TARGETS_DIR / "rv32" / "start_rv32.S",
                         TARGETS_DIR / "common" / "semihost_io.c",
                         TARGETS_DIR / "common" / "kl_rt.c"),
        runtime_includes=(TARGETS_DIR,),
        qemu=("qemu-system-riscv32", "-M", "virt", "-bios", "none"),
        nm="riscv64-unknown-elf-nm",
        isa="generic",
    ),
}


class ToolchainError(RuntimeError):
    """A build failed, or a tool is missing."""


@dataclasses.dataclass
class RunResult:
    exit_code: int
    stdout: str
    stderr: str = ""
    timed_out: bool = False
    icount_regions: list[int] | None = None  # instructions per start->stop marker region
    icount_total: int | None = None
    icount_errors: list[str] = dataclasses.field(default_factory=list)  # markers out of order

    @property
    def faulted(self) -> bool:
        return self.exit_code == FAULT_EXIT_CODE


def get_target(name: str) -> Target:
    try:
        return _TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; known: {', '.join(TARGET_NAMES)}") from None


def missing_tools(target: str) -> list[str]:
    return [t for t in get_target(target).tools if shutil.which(t) is None]


def available(target: str) -> bool:
    """True when the compiler (and the emulator, for qemu-*) of `target` are installed."""
    return not missing_tools(target)


def target_isa(target: str) -> str:
    """Which kernel path the target compiles: 'arm-dsp' or 'generic' (see descriptions.py)."""
    return get_target(target).isa


def build(sources: Sequence[os.PathLike | str], include_dirs: Sequence[os.PathLike | str],
          target: str, out_dir: os.PathLike | str,
          defines: Mapping[str, str | int | None] | Iterable[str] | None = None, *,
          name: str = "prog", sanitize: bool = False, extra_cflags: Sequence[str] = (),
          opt: str | None = None, timeout: float = 300) -> Path:
    """Compile and link `sources` (plus the target's startup/runtime) into out_dir/name.elf
    (host: out_dir/name). Returns the path of the executable. Raises ToolchainError with the
    compiler's output on failure."""
    t = get_target(target)
    miss = missing_tools(target)
    if miss:
        raise ToolchainError(f"target {target}: missing tools {', '.join(miss)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exe = out / (name if target == "host" else f"{name}.elf")
    cmd = [t.cc, *t.cflags]
    if opt:
        cmd = [c for c in cmd if not c.startswith("-O")] + [opt]
    if sanitize:
        if target != "host":
            raise ValueError("sanitizers are only available on the host target")
        cmd += ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                "-fno-omit-frame-pointer", "-g"]
    cmd += list(extra_cflags)
    for d in _define_flags(defines):
        cmd.append(d)
    for inc in [*t.runtime_includes, *include_dirs]:
        cmd.append(f"-I{Path(inc)}")
    cmd += [str(Path(s)) for s in [*sources, *t.runtime_sources]]
    cmd += ["-o", str(exe), *t.ldflags]
    if sanitize:
        cmd += ["-fsanitize=address,undefined"]
    if target != "host":
        cmd.append("-lgcc")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ToolchainError(f"build for {target} failed:\n$ {' '.join(cmd)}\n{proc.stdout}"
                             f"{proc.stderr}")
    return exe


def _define_flags(defines) -> list[str]:
    if not defines:
        return []
    if isinstance(defines, Mapping):
        return [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in defines.items()]
    return [d if d.startswith("-D") else f"-D{d}" for d in defines]


def qemu_command(exe: os.PathLike | str, target: str, plugin_args: str | None = None,
                 output_file: os.PathLike | str | None = None) -> list[str]:
    """The QEMU command line. Semihosting output goes to QEMU's stderr, or to output_file
    (a chardev) when given, which keeps it apart from QEMU's own messages."""
    t = get_target(target)
    if t.qemu is None:
        raise ValueError(f"{target} is not an emulated target")
    cmd = [*t.qemu, "-nographic"]
    if output_file is not None:
        cmd += ["-chardev", f"file,id=klsh,path={output_file}", "-semihosting-config",
                "enable=on,target=native,chardev=klsh"]
    else:
        cmd += ["-semihosting-config", "enable=on,target=native"]
    cmd += ["-kernel", str(exe)]
    if plugin_args:
        cmd += ["-plugin", plugin_args]
    return cmd


def run(exe: os.PathLike | str, target: str, timeout: float = 60, *, icount: bool = False,
        args: Sequence[str] = (), markers: tuple[str, str] = DEFAULT_MARKERS) -> RunResult:
    """Run an executable built by build() (host: directly; qemu-*: under QEMU with semihosting),
    always under a timeout (exit code 124 and timed_out=True when it expires).
    icount=True counts guest instructions (qemu-* only; see icount_unavailable_reason()): the
    total, and one region per call of markers[0] ... markers[1] (functions of the program, found
    by name in its symbol table; without them only the total is counted). Plugin errors (markers
    out of order) land in RunResult.icount_errors."""
    t = get_target(target)
    report = None
    outfile = None
    if t.qemu is None:
        if icount:
            raise ValueError("instruction counting needs a qemu-* target")
        cmd = [str(exe), *args]
    else:
        plug = None
        if icount:
            lib = icount_plugin(target)
            report = Path(tempfile.mkstemp(prefix="icount-", suffix=".txt")[1])
            plug = f"{_qemu_opt(lib)},out={_qemu_opt(report)}"
            s, e = _symbol_addr(exe, t, markers[0]), _symbol_addr(exe, t, markers[1])
            if s is not None and e is not None:
                plug += f",start={s:#x},stop={e:#x}"
        outfile = Path(tempfile.mkstemp(prefix="semihost-", suffix=".txt")[1])
        cmd = qemu_command(exe, target, plug, outfile)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout)
        res = RunResult(proc.returncode, proc.stdout.decode(errors="replace"),
                        proc.stderr.decode(errors="replace"))
    except subprocess.TimeoutExpired as exc:
        res = RunResult(TIMEOUT_EXIT_CODE, (exc.stdout or b"").decode(errors="replace"),
                        (exc.stderr or b"").decode(errors="replace"), timed_out=True)
    if outfile is not None:
        try:
            res.stdout = outfile.read_bytes().decode(errors="replace")
        finally:
            outfile.unlink(missing_ok=True)
    if report is not None:
        try:
            res.icount_regions, res.icount_total, res.icount_errors = \
                parse_icount_report(report.read_text())
        finally:
            report.unlink(missing_ok=True)
    return res


def parse_icount_report(text: str) -> tuple[list[int], int | None, list[str]]:
    """(regions, total, errors) of the plugin's report (see planner/qemu/icount_plugin.c)."""
    regions: list[int] = []
    total = None
    errors = []
    for line in text.splitlines():
        parts = line.split()
        if line.startswith("icount: region"):
            regions.append(int(parts[-1]))
        elif line.startswith("icount: total insns"):
            total = int(parts[-1])
        elif line.startswith("icount: error"):
            errors.append(line[len("icount: error"):].strip())
    return regions, total, errors


def _qemu_opt(value: os.PathLike | str) -> str:
    """A value inside a QEMU -plugin option list: commas are doubled."""
    return str(value).replace(",", ",,")


def _symbol_addr(exe, t: Target, sym: str) -> int | None:
    if not t.nm or shutil.which(t.nm) is None:
        return None
    out = subprocess.run([t.nm, str(exe)], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == sym:
            return int(parts[0], 16) & ~1  # Thumb functions have bit 0 set
    return None


# ---- the instruction-count plugin: built on first use, cached by the hash of what is built ----

_PLUGIN_CACHE: dict[str, Path] = {}


def cache_dir() -> Path:
    """Where built tools are kept: $PLANNER_CACHE_DIR, else $XDG_CACHE_HOME/planner, else
    ~/.cache/planner (never inside the repository)."""
    env = os.environ.get("PLANNER_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "planner"


def qemu_version(target: str) -> tuple[int, int] | None:
    """(major, minor) of the target's QEMU, or None when it is absent or says no version."""
    t = get_target(target)
    if t.qemu is None or shutil.which(t.qemu[0]) is None:
        return None
    try:
        out = subprocess.run([t.qemu[0], "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def plugin_api_version(qemu: tuple[int, int] | None) -> int:
    """The plugin API version to declare: QEMU up to 8.x accepts 0..1, 9.0 and later 2 and up."""
    return 1 if qemu is None or qemu[0] < 9 else 2


def icount_unavailable_reason(target: str = "qemu-m7") -> str | None:
    """None when instruction counting works here for `target`, else why not."""
    if not ICOUNT_PLUGIN_SRC.is_file():
        return f"instruction counting needs {ICOUNT_PLUGIN_SRC} (missing from this installation)"
    if shutil.which("gcc") is None:
        return ("instruction counting needs the host C compiler gcc to build the QEMU plugin "
                "(Debian: apt-get install gcc)")
    miss = missing_tools(target)
    if miss:
        return f"instruction counting on {target} needs {', '.join(miss)}"
    try:
        icount_plugin(target)
    except ToolchainError as exc:
        return str(exc)
    return None


def icount_plugin(target: str) -> Path:
    """The built plugin for `target`'s QEMU (built now if not in the cache)."""
    api = plugin_api_version(qemu_version(target))
    src = ICOUNT_PLUGIN_SRC.read_bytes()
    cmd = ["gcc", "-shared", "-fPIC", "-O2", "-std=c99", "-fvisibility=hidden", "-Wall",
           "-Wextra", "-Werror", f"-DNR_QEMU_PLUGIN_API={api}"]
    key = hashlib.sha256(src + "\0".join(cmd).encode()).hexdigest()[:16]
    if key in _PLUGIN_CACHE and _PLUGIN_CACHE[key].is_file():
        return _PLUGIN_CACHE[key]
    if shutil.which("gcc") is None:
        raise ToolchainError("instruction counting needs the host C compiler gcc to build the "
                             "QEMU plugin (Debian: apt-get install gcc)")
    lib = None
    for base in (cache_dir() / "qemu-plugin" / key, None):
        try:
            d = base if base is not None else Path(tempfile.mkdtemp(prefix="nr-icount-"))
            d.mkdir(parents=True, exist_ok=True)
            lib = d / "libnr_icount.so"
            if not lib.is_file():
                _build_plugin(cmd, lib)
            break
        except OSError:
            lib = None  # cache not writable: build into a temporary directory instead
    assert lib is not None
    _PLUGIN_CACHE[key] = lib
    return lib


def _build_plugin(cmd: list[str], lib: Path) -> None:
    """Compile into a temporary name beside `lib`, then rename: a concurrent build by another
    process never leaves a half-written library behind."""
    fd, tmp = tempfile.mkstemp(prefix=".libnr_icount-", suffix=".so", dir=lib.parent)
    os.close(fd)
    try:
        full = [*cmd, "-o", tmp, str(ICOUNT_PLUGIN_SRC)]
        proc = subprocess.run(full, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise ToolchainError(f"building the instruction-count plugin failed:\n$ "
                                 f"{' '.join(full)}\n{proc.stdout}{proc.stderr}")
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
