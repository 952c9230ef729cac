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

Instruction counting (``run(..., icount=True)``) builds ``../shared/tools/qemu/icount.c``
(relative to the repository root) into a temporary directory at run time; it is never copied
into the project. Counts are instructions, never cycles.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
KERNEL_LIB = REPO_ROOT / "kernel_lib"
TARGETS_DIR = KERNEL_LIB / "targets"
SHARED_QEMU_TOOLS = REPO_ROOT.parent / "shared" / "tools" / "qemu"

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
    icount_regions: list[int] | None = None  # instructions per prof_start->prof_stop region
    icount_total: int | None = None

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
        args: Sequence[str] = ()) -> RunResult:
    """Run an executable built by build() (host: directly; qemu-*: under QEMU with semihosting),
    always under a timeout (exit code 124 and timed_out=True when it expires).
    icount=True counts guest instructions (qemu-* only; needs ../shared, see
    icount_unavailable_reason())."""
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
            lib = _icount_plugin()
            report = Path(tempfile.mkstemp(prefix="icount-", suffix=".txt")[1])
            plug = f"{lib},out={report}"
            s, e = _symbol_addr(exe, t, "prof_start"), _symbol_addr(exe, t, "prof_stop")
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
            regions, total = [], None
            for line in report.read_text().splitlines():
                parts = line.split()
                if line.startswith("icount: region"):
                    regions.append(int(parts[-1]))
                elif line.startswith("icount: total") or line.startswith("icount: insns"):
                    total = int(parts[-1])
            res.icount_regions, res.icount_total = regions, total
        finally:
            report.unlink(missing_ok=True)
    return res


def _symbol_addr(exe, t: Target, sym: str) -> int | None:
    if not t.nm or shutil.which(t.nm) is None:
        return None
    out = subprocess.run([t.nm, str(exe)], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == sym:
            return int(parts[0], 16) & ~1
    return None


_PLUGIN_DIR: Path | None = None


def icount_unavailable_reason() -> str | None:
    """None when instruction counting works here, else why not."""
    if not (SHARED_QEMU_TOOLS / "icount.c").is_file():
        return f"instruction counting needs {SHARED_QEMU_TOOLS}/icount.c (../shared is absent)"
    if shutil.which("gcc") is None:
        return "instruction counting needs gcc to build the QEMU plugin"
    return None


def _icount_plugin() -> Path:
    global _PLUGIN_DIR
    reason = icount_unavailable_reason()
    if reason:
        raise ToolchainError(reason)
    if _PLUGIN_DIR is None or not (_PLUGIN_DIR / "libicount.so").is_file():
        _PLUGIN_DIR = Path(tempfile.mkdtemp(prefix="kl-icount-"))
        cmd = ["gcc", "-shared", "-fPIC", "-O2", f"-I{SHARED_QEMU_TOOLS}", "-o",
               str(_PLUGIN_DIR / "libicount.so"), str(SHARED_QEMU_TOOLS / "icount.c")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ToolchainError(f"building the icount plugin failed:\n{proc.stderr}")
    return _PLUGIN_DIR / "libicount.so"
